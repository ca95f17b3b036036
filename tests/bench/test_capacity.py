"""The capacity meter: the units each request puts on each partition key (table and index), the key classes,
and the ceilings they imply at AWS's per-partition limits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
from polos.aws import settings

from infra.metering import capacity
from infra.metering.capacity import KeyLoad, key_class, key_loads
from infra.metering.meter import Call, Meter, PartitionUse, queried_partition

TABLE = "p-RunsTable"


@pytest.fixture
def meter(aws: None) -> Iterator[Meter]:
    client = settings.dynamodb()
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "wf", "created_at")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_workflow",
                "KeySchema": [
                    {"AttributeName": "wf", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    metered = Meter(shadow=boto3.client("dynamodb", region_name="us-east-1"))
    metered.attach(client)
    yield metered
    metered.detach()


def _run(run_id: str, workflow: str) -> dict[str, dict[str, str]]:
    return {
        "pk": {"S": f"run#{run_id}"},
        "sk": {"S": "run"},
        "wf": {"S": workflow},
        "created_at": {"S": f"2026-12-07T00:00:0{run_id}Z"},
    }


def _uses(call: Call) -> list[tuple[str | None, str, float, float]]:
    return [(use.index, use.key, use.read_units, use.write_units) for use in call.partitions]


def test_writes_land_on_the_table_partition_and_the_index_partition(meter: Meter) -> None:
    settings.dynamodb().put_item(TableName=TABLE, Item=_run("1", "orders"))
    (call,) = meter.calls
    assert _uses(call) == [(None, "run#1", 0.0, 1.0), ("by_workflow", "orders", 0.0, 1.0)]


def test_an_index_key_change_deletes_from_one_index_partition_and_puts_into_another(meter: Meter) -> None:
    client = settings.dynamodb()
    client.put_item(TableName=TABLE, Item=_run("1", "orders"))
    meter.reset()
    client.put_item(TableName=TABLE, Item=_run("1", "billing"))
    (call,) = meter.calls
    assert _uses(call)[1:] == [("by_workflow", "orders", 0.0, 1.0), ("by_workflow", "billing", 0.0, 1.0)]


def test_reads_name_the_partition_they_read(meter: Meter) -> None:
    client = settings.dynamodb()
    for n in "12":
        client.put_item(TableName=TABLE, Item=_run(n, "orders"))
    meter.reset()
    client.get_item(TableName=TABLE, Key={"pk": {"S": "run#1"}, "sk": {"S": "run"}}, ConsistentRead=True)
    client.query(
        TableName=TABLE,
        IndexName="by_workflow",
        KeyConditionExpression="#w = :w AND created_at > :t",
        ExpressionAttributeNames={"#w": "wf"},
        ExpressionAttributeValues={":w": {"S": "orders"}, ":t": {"S": "2026"}},
    )
    keys = [{"pk": {"S": f"run#{n}"}, "sk": {"S": "run"}} for n in "12"]
    client.batch_get_item(RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}})
    get, query, batch = meter.calls
    assert _uses(get) == [(None, "run#1", 1.0, 0.0)]
    assert _uses(query) == [("by_workflow", "orders", 0.5, 0.0)]
    assert _uses(batch) == [(None, "run#1", 1.0, 0.0), (None, "run#2", 1.0, 0.0)]


def test_a_query_partition_is_read_from_its_key_condition() -> None:
    api = {
        "KeyConditionExpression": "pk = :pk AND sk > :after",
        "ExpressionAttributeValues": {":pk": {"S": "topic#a"}, ":after": {"S": "x"}},
    }
    assert queried_partition(api, "pk") == "topic#a"
    assert queried_partition(api, "wf") is None


@pytest.mark.parametrize(
    ("table", "index", "key", "expected"),
    [
        ("b1-EventsTable", None, "seq#orders", capacity.TOPIC_COUNTER),
        ("b1-EventsTable", None, "topic#orders#12", capacity.TOPIC_EVENTS),
        ("b1-EventsTable", None, "topic#orders", capacity.TOPIC_EVENTS),
        ("b1-EventsTable", None, "id#orders#o-1", capacity.TOPIC_CLIENT_IDS),
        ("b1-EventsTable", None, "wait#orders", capacity.WAITERS),
        ("b1-RunsTable", "by_workflow", "orders", capacity.WORKFLOW_INDEX),
        ("b1-RunsTable", None, "timer#3", capacity.TIMER_SHARD),
        ("b1-RunsTable", None, "run#abc", capacity.RUN),
        ("b1-RunsTable", None, "flow#orders#throttle#0a1b", capacity.FLOW_KEY),
        ("b1-RunsTable", None, "qorder#lane#k#orders#2", capacity.QUEUE_ORDER),
        ("b1-ApiKeysTable", None, "0123abcd", capacity.API_KEY),
        ("b1-IdempotencyTable", None, "publish#k", capacity.IDEMPOTENCY),
    ],
)
def test_keys_fall_in_their_class(table: str, index: str | None, key: str, expected: object) -> None:
    assert key_class(PartitionUse(table, index, key)) == expected


def _call(*uses: PartitionUse) -> Call:
    return Call("dynamodb", "X", {}, True, None, 0.0, 0.0, None, 0, partitions=list(uses))


def test_the_busiest_key_of_a_class_sets_its_ceiling() -> None:
    calls = [_call(PartitionUse("b-EventsTable", None, "seq#a", write_units=1.0)) for _ in range(10)] + [
        _call(PartitionUse("b-EventsTable", None, "seq#b", write_units=1.0)) for _ in range(5)
    ]
    (load,) = key_loads("w", calls, {capacity.TOPIC_EVENTS: ("event", 10)})
    assert load.key == "table:seq#a" and load.write_units == 1.0
    assert load.ceiling == pytest.approx(capacity.HEADROOM * capacity.WRITE_LIMIT)  # 800 events/s
    assert load.verdict == "FAIL"


def test_a_spread_class_counts_the_mean_share_of_its_scopes_keys() -> None:
    """A workflow's runs over its 16 index partitions, an API key's checks over its 4 items: whatever the
    small sample's draw, a key's share is its mean one."""
    index = [
        _call(PartitionUse("b-RunsTable", "by_workflow", f"orders#{n % 3}", write_units=1.0))
        for n in range(32)
    ]
    (load,) = key_loads("w", index, {capacity.WORKFLOW_INDEX: ("run", 32)})
    assert load.write_units == pytest.approx(1 / capacity.INDEX_SHARDS)
    assert load.ceiling == pytest.approx(0.8 * 1_000 * capacity.INDEX_SHARDS) and load.verdict == "PASS"
    checks = [_call(PartitionUse("b-ApiKeysTable", None, "k#1", read_units=1.0)) for _ in range(40)]
    (load,) = key_loads("w", checks, {capacity.API_KEY: ("request", 40)})
    assert load.read_units == pytest.approx(1 / capacity.REPLICAS) and load.verdict == "PASS"


def test_a_rotating_key_caps_nothing_while_its_span_fits_the_limit() -> None:
    """A topic's event block takes BLOCK_EVENTS events, then the next block does: 100 one-unit events are
    100 units in its busiest second at any rate; 100 nine-unit events would pass 80 % of 1,000."""
    small = [_call(PartitionUse("b-EventsTable", None, "topic#a#0", write_units=1.0)) for _ in range(100)]
    (load,) = key_loads("w", small, {capacity.TOPIC_EVENTS: ("event", 1_000)})
    assert load.write_units == 1.0  # per event the block itself took, not per event of the workload
    assert load.ceiling == math.inf and load.verdict == "PASS"
    big = [_call(PartitionUse("b-EventsTable", None, "topic#a#0", write_units=9.0)) for _ in range(100)]
    (load,) = key_loads("w", big, {capacity.TOPIC_EVENTS: ("event", 1_000)})
    assert load.ceiling == pytest.approx(800 / 9)


def test_reads_and_writes_each_bound_the_ceiling() -> None:
    reads = KeyLoad("w", capacity.API_KEY, "k", "request", read_units=0.25, write_units=0.0)
    writes = KeyLoad("w", capacity.API_KEY, "k", "request", read_units=0.25, write_units=0.5)
    assert reads.ceiling == pytest.approx(0.8 * 3_000 / 0.25) and reads.verdict == "PASS"
    assert writes.ceiling == pytest.approx(0.8 * 1_000 / 0.5) and writes.verdict == "FAIL"
    assert KeyLoad("w", capacity.RUN, "r", "run", 0.0, 0.0).ceiling == math.inf


def test_unshared_keys_count_per_run() -> None:
    calls = [_call(PartitionUse("b-RunsTable", None, "run#1", write_units=3.0))]
    (load,) = key_loads("w", calls, {capacity.TOPIC_EVENTS: ("event", 100)})
    assert (load.unit, load.write_units) == ("run", 3.0)
    assert capacity.rate(load) == "not shared (one run)"


def test_a_flow_keys_shards_count_as_one_key_at_their_mean_share() -> None:
    """A throttle's window over 4 items (the key's own item, then ``#1``..``#3``): a quarter of the units per
    event on each, in the bench and in ``polos capacity`` (per start: one write each)."""
    base = "flow#orders#throttle#0a1b"
    shards = [base, *(f"{base}#{n}" for n in range(1, 4))]
    calls = [
        _call(PartitionUse("b-RunsTable", None, shards[n % 4], read_units=1.0, write_units=1.0))
        for n in range(40)
    ]
    (load,) = key_loads("w", calls, {capacity.FLOW_KEY: ("event", 40)})
    assert load.write_units == pytest.approx(1 / 4) and load.key.endswith("(1 of 4 shards)")
    assert load.ceiling == pytest.approx(0.8 * 1_000 * 4)
    ledger = capacity.Ledger()
    ledger.add(calls)
    (flow,) = ledger.loads()
    assert (flow.workload, flow.unit, flow.key_class) == (base, "start", capacity.FLOW_KEY)
    assert flow.write_units == pytest.approx(1 / 4) and flow.read_units == pytest.approx(1 / 4)


def test_a_load_of_its_own_target_is_judged_by_it() -> None:
    flow = KeyLoad("w", capacity.FLOW_KEY, "k", "event", read_units=0.0, write_units=1.0)
    assert flow.verdict == "-"  # no target of the class: a flow key's is its limit / period
    assert replace(flow, target=500).verdict == "PASS" and replace(flow, target=1_000).verdict == "FAIL"


def test_a_start_order_registrys_partitions_count_as_one_key_at_their_mean_share() -> None:
    """An ordered key's registry over 3 partitions (the key's own, then ``#1``, ``#2``): each run reads all
    three and writes one; per run, a third of its writes and one read land on each."""
    base = "qorder#lane#k#orders"
    partitions = [base, f"{base}#1", f"{base}#2"]
    calls = [
        _call(*(PartitionUse("b-RunsTable", None, pk, read_units=1.0) for pk in partitions))
        for _ in range(30)
    ] + [_call(PartitionUse("b-RunsTable", None, partitions[n % 3], write_units=1.0)) for n in range(30)]
    (load,) = key_loads("w", calls, {capacity.QUEUE_ORDER: ("run", 30)})
    assert load.key.endswith("(1 of 3 shards)") and load.write_units == pytest.approx(1 / 3)
    assert load.read_units == pytest.approx(1.0) and load.verdict == "PASS"
    ledger = capacity.Ledger()
    ledger.add(calls)
    (order,) = ledger.loads()
    assert (order.workload, order.unit, order.key_class) == (base, "run", capacity.QUEUE_ORDER)
    assert order.write_units == pytest.approx(1 / 3) and order.read_units == pytest.approx(1.0)

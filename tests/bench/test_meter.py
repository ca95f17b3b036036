"""The meter: requests and billed units of real calls on moto, tags across threads, injected crashes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from polos.aws import settings
from polos.aws.item_size import item_size

from infra.metering.meter import Crash, Index, Meter, index_writes

TABLE = "metered"


@pytest.fixture
def meter(aws: None) -> Iterator[Meter]:
    client = settings.dynamodb()
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    metered = Meter(shadow=boto3.client("dynamodb", region_name="us-east-1"))
    metered.attach(client, settings.sqs())
    yield metered
    metered.detach()


def _item(key: str, size: int) -> dict[str, dict[str, str]]:
    """An item of exactly ``size`` bytes: ``pk`` (2 + len(key)) and ``v`` (1 + the padding)."""
    return {"pk": {"S": key}, "v": {"S": "x" * (size - 3 - len(key))}}


def test_puts_cost_the_larger_of_the_item_before_and_after(meter: Meter) -> None:
    client = settings.dynamodb()
    client.put_item(TableName=TABLE, Item=_item("a", 1500))
    client.put_item(TableName=TABLE, Item=_item("a", 100))  # overwrite: the 1500-byte item counts
    client.put_item(TableName=TABLE, Item=_item("b", 1024))
    assert [call.write_units for call in meter.calls] == [2, 2, 1]
    assert all(call.read_units == 0 for call in meter.calls)


def test_updates_deletes_and_failed_conditions(meter: Meter) -> None:
    client = settings.dynamodb()
    client.put_item(TableName=TABLE, Item=_item("a", 500))
    meter.reset()
    client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET w = :w",
        ExpressionAttributeValues={":w": {"S": "y" * 1600}},
    )
    with pytest.raises(ClientError):
        client.put_item(TableName=TABLE, Item=_item("a", 10), ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError):
        client.put_item(TableName=TABLE, Item=_item("z", 10), ConditionExpression="attribute_exists(pk)")
    client.delete_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    units = [(call.operation, call.ok, call.write_units) for call in meter.calls]
    assert units == [
        ("UpdateItem", True, 3),
        ("PutItem", False, 3),
        ("PutItem", False, 1),
        ("DeleteItem", True, 3),
    ]
    assert meter.calls[1].error_code == "ConditionalCheckFailedException"


def test_batches_count_each_item_and_transactions_double(meter: Meter) -> None:
    client = settings.dynamodb()
    client.batch_write_item(
        RequestItems={TABLE: [{"PutRequest": {"Item": _item(k, 2000)}} for k in ("a", "b", "c")]}
    )
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("d", 100)}},
            {
                "ConditionCheck": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "a"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )
    assert [call.write_units for call in meter.calls] == [6, 2 + 4]


def test_reads_by_consistency_and_size(meter: Meter) -> None:
    client = settings.dynamodb()
    for key in ("a", "b", "c"):
        client.put_item(TableName=TABLE, Item=_item(key, 3000))
    meter.reset()
    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}}, ConsistentRead=True)
    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    client.get_item(TableName=TABLE, Key={"pk": {"S": "nope"}}, ConsistentRead=True)
    client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :a",
        ExpressionAttributeValues={":a": {"S": "a"}},
        ConsistentRead=True,
    )
    client.batch_get_item(RequestItems={TABLE: {"Keys": [{"pk": {"S": k}} for k in ("a", "b", "x")]}})
    client.scan(TableName=TABLE)  # 9,000 bytes read, eventually consistent: ceil(9000 / 4096) / 2
    assert [call.read_units for call in meter.calls] == [1, 0.5, 1, 1, 1.5, 1.5]
    assert all(call.write_units == 0 for call in meter.calls)


def test_sqs_requests_are_billed_per_64_kb_and_empty_receives_are_marked(meter: Meter) -> None:
    sqs = settings.sqs()
    url = sqs.create_queue(QueueName="metered")["QueueUrl"]
    meter.reset()
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 10_000} for i in range(10)]
    )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30)
    billed = [(call.operation, call.billed_requests, call.empty) for call in meter.calls]
    size = sum(len(m["Body"]) for m in received["Messages"])
    assert billed[0] == ("SendMessageBatch", 2, False)  # 100,000 bytes = 2 chunks of 64 KB
    assert billed[1] == ("ReceiveMessage", -(-size // 65536), False)
    assert billed[2] == ("ReceiveMessage", 1, True)


def test_tags_follow_work_into_threads(meter: Meter) -> None:
    async def work() -> None:
        await asyncio.to_thread(settings.dynamodb().describe_table, TableName=TABLE)

    with meter.tag("ApiFunction:1"):
        asyncio.run(work())
    settings.dynamodb().describe_table(TableName=TABLE)
    assert [call.tag for call in meter.calls] == ["ApiFunction:1", None]
    assert len(meter.select(tag="ApiFunction:1")) == 1


def test_a_crash_comes_after_the_nth_selected_call_took_effect(meter: Meter) -> None:
    client = settings.dynamodb()
    meter.crash_after(2, where=lambda call: call.operation == "PutItem")
    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})  # not selected: not counted
    client.put_item(TableName=TABLE, Item=_item("a", 10))
    with pytest.raises(Crash, match="PutItem"):
        client.put_item(TableName=TABLE, Item=_item("b", 10))
    assert "Item" in client.get_item(TableName=TABLE, Key={"pk": {"S": "b"}})  # it did take effect
    assert not meter.crash_pending
    client.put_item(TableName=TABLE, Item=_item("c", 10))  # one crash only
    assert issubclass(Crash, BaseException) and not issubclass(Crash, Exception)


INDEXED = "indexed"


@pytest.fixture
def indexed(meter: Meter) -> str:
    """A table like the runs table: ``by_workflow`` on (wf, created_at), all attributes projected."""
    settings.dynamodb().create_table(
        TableName=INDEXED,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "wf", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_workflow",
                "KeySchema": [
                    {"AttributeName": "wf", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    meter.reset()
    return INDEXED


def _set(key: str, name: str, value: str) -> None:
    settings.dynamodb().update_item(
        TableName=INDEXED,
        Key={"pk": {"S": key}},
        UpdateExpression="SET #n = :v",
        ExpressionAttributeNames={"#n": name},
        ExpressionAttributeValues={":v": {"S": value}},
    )


def test_index_writes_follow_dynamodbs_rules(meter: Meter, indexed: str) -> None:
    client = settings.dynamodb()
    client.put_item(TableName=indexed, Item={"pk": {"S": "free"}, "v": {"S": "x"}})  # no index keys
    run = {"pk": {"S": "r1"}, "wf": {"S": "w"}, "created_at": {"S": "t1"}, "v": {"S": "x" * 1500}}
    client.put_item(TableName=indexed, Item=run)  # enters the index: 1 write of the 2-KB item
    _set("r1", "status", "done")  # a projected attribute changes (ALL): 1 write
    _set("r1", "created_at", "t2")  # an index key changes: delete + put, 2 writes
    _set("r1", "status", "done")  # nothing changes: no index write
    client.delete_item(TableName=indexed, Key={"pk": {"S": "r1"}})  # leaves the index: 1 write
    assert [c.index_write_units for c in meter.calls] == [0, 2, 2, 4, 0, 2]
    assert [c.write_units - c.index_write_units for c in meter.calls] == [1, 2, 2, 2, 2, 2]
    # A keys-only index is written only when an item enters, leaves or moves (1 KB or less each time).
    assert [c.index_write_units_keys_only for c in meter.calls] == [0, 1, 0, 2, 0, 1]


def test_transactions_double_table_units_not_index_units(meter: Meter, indexed: str) -> None:
    item = {"pk": {"S": "r2"}, "wf": {"S": "w"}, "created_at": {"S": "t"}}
    settings.dynamodb().transact_write_items(TransactItems=[{"Put": {"TableName": indexed, "Item": item}}])
    (call,) = meter.calls
    assert (call.write_units, call.index_write_units) == (2 + 1, 1)
    assert [(i.kind, i.units) for i in call.items] == [("indexed:*", 2)]


def test_index_writes_count_projected_bytes_only() -> None:
    index = Index("i", ("wf",), "INCLUDE", included=("small",))
    old = {"pk": {"S": "a"}, "wf": {"S": "w"}, "small": {"S": "s"}, "big": {"S": "x" * 5000}}
    new = {**old, "big": {"S": "y" * 5000}}
    assert index_writes(old, new, index, ["pk"]) == []  # an unprojected attribute changed
    assert index_writes(old, new, index, ["pk"], "ALL") == [item_size(new)]
    assert index_writes(None, new, index, ["pk"]) == [item_size({k: new[k] for k in ("pk", "wf", "small")})]


def test_the_meters_own_reads_count_as_the_requests_time_not_the_callers(meter: Meter) -> None:
    """An UpdateItem's units need the item read after it: that read is the meter's, so a Lambda's billed
    duration (wall time less its requests' time, ``bench.stack.LambdaCall``) must not include it."""
    shadow = meter._shadow_client()
    slow = 0.05
    real_get = shadow.get_item

    def slow_get(**kwargs: object) -> object:
        time.sleep(slow)  # stands in for the meter's read on a slow machine
        return real_get(**kwargs)

    shadow.get_item = slow_get  # type: ignore[method-assign]
    client = settings.dynamodb()
    started = time.perf_counter()
    client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET w = :w",
        ExpressionAttributeValues={":w": {"S": "y"}},
    )
    wall = time.perf_counter() - started
    (call,) = meter.calls
    assert call.seconds >= 2 * slow  # the size before and the size after, both read inside the span
    assert wall - call.seconds < slow  # what is left to the caller holds no meter read

"""Event waiters indexed by their ``match`` (``polos.publish.waiters``): a publish reads only the waiters its
events can match, whatever the number waiting; marks that lapse with the waits instead of a count that TTL
leaves high; waiters of the old layout still found; fan-out before matching; a recheck reads only unseen ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.chunking import write_all
from polos.publish import publishing, waiters
from polos.publish.events import COUNTER_SK
from polos.testing import Stack, local_stack

from infra.metering import prices
from infra.metering.meter import Call, Meter

TOPIC = "idx/paid"
WAIT_SECONDS = 3600
delivered: list[str] = []


@workflow(id="idx-order")
async def order(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    paid = await ctx.step.wait_for_event(
        "paid", TOPIC, timeout=WAIT_SECONDS, match={"order_id": payload["id"], "ok": True}
    )
    return {"n": paid.data["n"], "sequence_id": paid.sequence_id}


@workflow(id="idx-ledger", trigger_on_event=TOPIC)
async def ledger(ctx: WorkflowContext, payload: Any) -> None:
    delivered.append(str(payload.data["order_id"]))


APP = App("waiter-index", [order, ledger])


@pytest.fixture
def stack() -> Iterator[Stack]:
    delivered.clear()
    with local_stack(APP) as opened:
        yield opened


@contextmanager
def metered() -> Iterator[list[Call]]:
    """Every AWS request of the block with its billed units (the meter; a shadow client sizes items)."""
    meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
    meter.attach(settings.dynamodb(), settings.sqs())
    calls: list[Call] = []
    try:
        yield calls
    finally:
        meter.detach()
        calls.extend(meter.calls)


def names_a_waiter(call: Call) -> bool:
    return '"wait#' in json.dumps(call.params, default=str)


def register_waiters(count: int, until: float) -> None:
    """``count`` waiting steps of other orders on the topic: the first registered as ``wait_for_event``
    does, the others' items written as it writes them (the waiters module's own encoder), 25 a request."""
    found = [
        waiters.Waiter(TOPIC, "idx-order", f"run_{n:026d}", "paid", 0, match={"order_id": f"o-{n}"})
        for n in range(count)
    ]
    waiters.WaiterStore().register(found[0], until)
    items = [waiters._encode(waiter, int(until)) for waiter in found[1:]]
    table = settings.get_settings().events_table
    for start in range(0, len(items), 25):
        chunk = items[start : start + 25]
        write_all(settings.dynamodb(), table, [{"PutRequest": {"Item": item}} for item in chunk])


def reads_of_one_publish(waiting: int) -> tuple[int, float, int]:
    """(requests, DynamoDB read units, requests naming a waiter) of one publish whose event matches none of
    ``waiting`` waiters."""
    with local_stack(APP):
        register_waiters(waiting, time.time() + WAIT_SECONDS)
        with metered() as calls:
            publishing.publish_events(
                TOPIC, [publishing.NewEvent(None, {"order_id": "o-none", "ok": True, "n": 1})]
            )
    return (
        len(calls),
        sum(call.read_units for call in calls),
        sum(1 for call in calls if names_a_waiter(call)),
    )


@pytest.mark.timeout(600)
def test_a_publish_reads_the_same_with_10_and_with_10000_waiters_whose_match_differs() -> None:
    few = reads_of_one_publish(10)
    many = reads_of_one_publish(10_000)
    assert many[0] == few[0], (few, many)  # the same requests
    assert abs(many[1] - few[1]) <= 0.1 * few[1], (few, many)  # read units within 10%
    assert many[2] == few[2] == 1  # one Query: the partition of its order_id's value


def test_a_waiter_deleted_by_ttl_costs_a_publish_nothing_once_its_wait_has_ended(stack: Stack) -> None:
    ended = time.time() - 3 * 3600  # beyond its waiter's margin and its mark's slack
    waiter = waiters.Waiter(TOPIC, "idx-order", "run_gone", "paid", 0, match={"order_id": "o-1"})
    waiters.WaiterStore().register(waiter, ended)
    table = settings.get_settings().events_table
    for item in settings.dynamodb().scan(TableName=table)["Items"]:  # as TTL does: the item goes, no more
        if item["pk"]["S"].startswith("wait#"):
            settings.dynamodb().delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    with metered() as calls:
        stack.publish(TOPIC, [{"data": {"order_id": "o-1", "ok": True, "n": 1}}])
    assert [call.operation for call in calls if names_a_waiter(call)] == []


def test_a_waiter_registered_by_the_old_layout_is_still_found_and_its_count_then_dropped(
    stack: Stack,
) -> None:
    run_id = stack.invoke("idx-order", {"id": "o-7"})
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"
    as_the_old_code_left_it(TOPIC)
    stack.publish(TOPIC, [{"data": {"order_id": "o-7", "ok": True, "n": 7}}])
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"]["n"] == 7, run
    with metered() as calls:  # the old layout's waiters are all gone: this read drops its count
        stack.publish(TOPIC, [{"data": {"order_id": "o-8", "ok": True, "n": 8}}])
    assert [call.operation for call in calls if names_a_waiter(call)] == ["Query"]
    assert "waiters" not in counter(TOPIC)
    with metered() as calls:
        stack.publish(TOPIC, [{"data": {"order_id": "o-9", "ok": True, "n": 9}}])
    assert [call.operation for call in calls if names_a_waiter(call)] == []


def counter(topic: str) -> dict[str, Any]:
    item: dict[str, Any] = settings.dynamodb().get_item(
        TableName=settings.get_settings().events_table,
        Key={"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}},
        ConsistentRead=True,
    )["Item"]
    return item


def as_the_old_code_left_it(topic: str) -> None:
    """Rewrite the topic's waiters as the code before the index stored them: every one in ``wait#<topic>``
    without ``v``, counted in the counter's ``waiters``, no marks."""
    client, table = settings.dynamodb(), settings.get_settings().events_table
    found = [i for i in client.scan(TableName=table)["Items"] if i["pk"]["S"].startswith(f"wait#{topic}")]
    for item in found:
        client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
        old = {name: value for name, value in item.items() if name != "v"}
        client.put_item(TableName=table, Item={**old, "pk": {"S": f"wait#{topic}"}})
    marks = [name for name in counter(topic) if name.startswith(waiters.MARK_PREFIX)]
    client.update_item(
        TableName=table,
        Key={"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}},
        UpdateExpression="SET waiters = :n REMOVE " + ", ".join(f"#m{i}" for i in range(len(marks))),
        ExpressionAttributeNames={f"#m{i}": name for i, name in enumerate(marks)},
        ExpressionAttributeValues={":n": {"N": str(len(found))}},
    )


def test_subscribers_get_the_event_when_matching_fails_and_the_keyed_retry_matches_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = stack.invoke("idx-order", {"id": "o-3"})
    stack.drain()
    real = waiters.query_all
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, "Query"
    )

    def throttle(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise throttled

    monkeypatch.setattr(waiters, "query_all", throttle)  # every read of the waiters is throttled
    body = {"topic": TOPIC, "events": [{"data": {"order_id": "o-3", "ok": True, "n": 3}}]}
    failed = stack.request("POST", "/api/v1/events/publish", body, {"Idempotency-Key": "pay-o-3"})
    assert failed.status >= 500
    stack.drain()
    assert delivered == ["o-3"]  # fanned out before the match was tried
    assert stack.run(run_id)["status"] == "waiting"
    monkeypatch.setattr(waiters, "query_all", real)
    retried = stack.publish(TOPIC, body["events"], idempotency_key="pay-o-3")  # the client's retry
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {
        "n": 3,
        "sequence_id": retried["sequence_ids"][0],
    }
    assert delivered == ["o-3"]  # the retry's fan-out is a duplicate: still one run


def test_a_recheck_reads_only_the_ids_its_look_back_had_not_seen(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_execute, real_register = publishing._execute, waiters.WaiterStore.register
    held: list[Any] = []

    def execute_later(*args: Any) -> Any:
        if not held:  # the first publish reserves its id, then stores its event only after the look-back
            held.append(args)
            return []
        return real_execute(*args)

    def register_after_a_reserve(self: waiters.WaiterStore, waiter: waiters.Waiter, until: Any) -> int:
        if not held:
            stack.publish(TOPIC, [{"data": {"order_id": "o-5", "ok": True, "n": 5}}])
        return real_register(self, waiter, until)

    monkeypatch.setattr(publishing, "_execute", execute_later)
    monkeypatch.setattr(waiters.WaiterStore, "register", register_after_a_reserve)
    run_id = stack.invoke("idx-order", {"id": "o-5"})
    stack.drain()  # registered; its look-back saw id 1 reserved, not stored: a recheck is due
    assert stack.run(run_id)["status"] == "waiting"
    real_execute(*held[0])  # the held publish stores its event at last (its publisher saw no waiter)
    for n in range(30):  # later events of other orders: their publishers look for waiters themselves
        stack.publish(TOPIC, [{"data": {"order_id": f"other-{n}", "ok": True, "n": n}}])
    read: list[int] = []

    def count_events_read(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Query":
            items = parsed.get("Items", [])
            read.extend(1 for item in items if item["pk"]["S"].split("#")[:2] == ["topic", TOPIC])

    events = settings.dynamodb().meta.events
    events.register("after-call.dynamodb.Query", count_events_read)
    try:
        stack.advance(seconds=waiters.recheck_delay() + 1)
        stack.drain()
    finally:
        events.unregister("after-call.dynamodb.Query", count_events_read)
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"n": 5, "sequence_id": 1}, run
    assert len(read) == 1  # the one id it had not seen, not the 31 events since the wait began


@workflow(id="idx-untimed")
async def untimed(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    paid = await ctx.step.wait_for_event("paid", "idx/untimed", match={"order_id": payload["id"]})
    return int(paid.data["n"])


def test_an_untimed_wait_registers_again_before_its_waiter_and_mark_lapse() -> None:
    with local_stack(App("waiter-untimed", [untimed])) as stack:
        run_id = stack.invoke("idx-untimed", {"id": "u-1"})
        stack.drain()
        first = waiter_expiry("idx/untimed")
        assert first <= time.time() + waiters.UNTIMED_HORIZON_SECONDS + 60
        stack.advance(seconds=waiters.UNTIMED_RENEW_SECONDS + 1)
        stack.drain()  # the renewal: the run registers its waiter again and goes on waiting
        renewed = stack.run(run_id)
        assert renewed["status"] == "waiting" and renewed["waiting_for"]["kind"] == "event"
        assert renewed["attempts"] == 2  # the renewal's replay
        assert counter("idx/untimed")[waiters.field_mark("order_id")]  # the mark covers the renewed waiter
        stack.publish("idx/untimed", [{"data": {"order_id": "u-1", "n": 4}}])
        stack.drain()
        assert stack.run(run_id)["status"] == "completed" and stack.run(run_id)["result"] == 4


def waiter_expiry(topic: str) -> int:
    items = settings.dynamodb().scan(TableName=settings.get_settings().events_table)["Items"]
    (found,) = [item for item in items if item["pk"]["S"].startswith(f"wait#{topic}#")]
    return int(found["expires_at"]["N"])

"""Queue start order across out-of-order deliveries: runs of a ``strict_order`` workflow start by
``sequence_id`` even when SQS hands their events over in reverse (judged by the step functions' own start
times). The publish registers each request's events per queue and key (:mod:`polos.publish.start_order`);
a run whose lower sequence ids have not reached admission parks ``queued`` behind them. Without
``strict_order`` nothing is registered or read: the runs queued for a slot start by ``sequence_id``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polos import EventPayload, Queue, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.errors import WorkflowDefinitionError
from polos.publish import start_order
from polos.runtime import slots
from polos.testing import Stack, local_stack

# (workflow, n, key, start) of each call of a step function
STARTS: list[tuple[str, int, str | None, float]] = []
EVENTS = 5


async def _work(wf: str, n: int, key: str | None) -> int:
    STARTS.append((wf, n, key, time.monotonic()))
    await asyncio.sleep(0.01)
    return n


@workflow(
    id="o-lane", trigger_on_event="o/lane", queue=Queue("o-lane", concurrency_limit=1), strict_order=True
)
async def lane(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "o-lane", payload.data["n"], None)


@workflow(
    id="o-keyed",
    trigger_on_event="o/keyed",
    queue=Queue("o-keyed", concurrency_limit=1),
    concurrency_key="data.customer",
    strict_order=True,
)
async def keyed(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "o-keyed", payload.data["n"], payload.data["customer"])


@workflow(
    id="o-pair", trigger_on_event="o/pair", queue=Queue("o-pair", concurrency_limit=2), strict_order=True
)
async def pair(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "o-pair", payload.data["n"], None)


@workflow(
    id="o-wide", trigger_on_event="o/wide", queue=Queue("o-wide", concurrency_limit=3), strict_order=True
)
async def wide(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "o-wide", payload.data["n"], None)


@workflow(id="o-loose", trigger_on_event="o/loose", queue=Queue("o-loose", concurrency_limit=1))
async def loose(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "o-loose", payload.data["n"], None)


@workflow(id="o-publisher")
async def publisher(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    for n in range(2):
        await ctx.step.publish_event(f"event-{n}", "o/lane", {"n": n})


APP = App("start-order", [lane, keyed, pair, wide, loose, publisher])


@pytest.fixture
def stack() -> Iterator[Stack]:
    STARTS.clear()
    with local_stack(APP) as opened:
        yield opened


def _deliver_in_reverse(stack: Stack, workflow_id: str, count: int) -> None:
    """Receive the workflow's ``count`` event messages, then hand them to the worker one by one, highest
    ``sequence_id`` first (SQS standard queues may do this); then drain what that set off."""
    (mapping,) = [m for m in stack._local.mappings if m.spec.workflow_id == workflow_id]
    received: list[Any] = []
    while len(received) < count:
        batch = mapping.collect(wait_seconds=0, flush=True)
        assert batch, f"only {len(received)} of {count} messages were queued"
        received += batch
    received.sort(key=lambda message: json.loads(message["Body"])["event"]["sequence_id"], reverse=True)
    for message in received:
        mapping.deliver([message])
    stack.drain()


def _started(workflow_id: str) -> list[int]:
    return [n for wf, n, _, _ in sorted(STARTS, key=lambda start: start[3]) if wf == workflow_id]


def _registry_left(queue: str, key: str | None, workflow_id: str, limit: int = 1) -> list[dict[str, Any]]:
    """Every registry item of the key, in all its partitions."""
    left: list[dict[str, Any]] = []
    for partition in range(start_order.partitions(limit)):
        answer = settings.dynamodb().query(
            TableName=settings.get_settings().runs_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={
                ":pk": {"S": start_order.registry_pk(queue, key, workflow_id, partition)}
            },
            ConsistentRead=True,
        )
        left += answer.get("Items", [])
    return left


def test_runs_start_in_sequence_order_when_their_events_arrive_in_reverse(stack: Stack) -> None:
    stack.publish("o/lane", [{"data": {"n": n}} for n in range(EVENTS)])
    _deliver_in_reverse(stack, "o-lane", EVENTS)
    assert sorted(run["status"] for run in stack.runs("o-lane")) == ["completed"] * EVENTS
    assert _started("o-lane") == list(range(EVENTS)), "runs of a limit-1 queue started out of sequence order"
    assert all(run["attempts"] == 1 for run in stack.runs("o-lane"))  # parking executed nothing
    assert _registry_left("o-lane", None, "o-lane") == [], "every registered event was admitted"
    assert slots.Slots().holders(slots.SlotSpec("o-lane", 1, None, "")) == []


def test_each_key_keeps_its_own_order_and_a_key_is_not_held_back_by_another(stack: Stack) -> None:
    data = [{"n": n, "customer": "a" if n % 2 == 0 else "b"} for n in range(6)]
    stack.publish("o/keyed", [{"data": item} for item in data])
    _deliver_in_reverse(stack, "o-keyed", len(data))
    by_key = {
        key: [n for wf, n, k, _ in sorted(STARTS, key=lambda s: s[3]) if k == key] for key in ("a", "b")
    }
    assert by_key == {"a": [0, 2, 4], "b": [1, 3, 5]}
    assert _registry_left("o-keyed", "a", "o-keyed") == _registry_left("o-keyed", "b", "o-keyed") == []


def test_a_queue_of_limit_two_starts_the_first_two_together_then_the_rest_in_order(stack: Stack) -> None:
    stack.publish("o/pair", [{"data": {"n": n}} for n in range(EVENTS)])
    _deliver_in_reverse(stack, "o-pair", EVENTS)
    started = _started("o-pair")
    assert sorted(started) == list(range(EVENTS))
    # Limit 2: each run starts no later than the run two places after it in sequence order.
    late = [n for n in range(EVENTS - 2) if started.index(n) > started.index(n + 2)]
    assert late == [], f"runs started out of sequence order: {started}"


def test_a_wide_queues_registry_spreads_over_partitions_and_a_run_sees_every_one(stack: Stack) -> None:
    """Limit 3: three partition keys take the registry's writes (no one key takes every write of an
    ordered key); a run reads all of them, so a lower id registered in another partition still counts."""
    requests = 6
    for n in range(requests):
        stack.publish("o/wide", [{"data": {"n": n}}])
    registered = _registry_left("o-wide", None, "o-wide", limit=3)
    used = {item["pk"]["S"] for item in registered}
    assert len(registered) == requests and len(used) > 1, f"one partition took every registration: {used}"
    highest = max(int(item["sk"]["S"][1:]) for item in registered)
    found = start_order.standing("o-wide", None, "o-wide", highest, time.time(), limit=3)
    assert found.own is not None and found.lower == requests - 1, "lower ids of other partitions were missed"
    _deliver_in_reverse(stack, "o-wide", requests)
    started = _started("o-wide")
    assert sorted(started) == list(range(requests))
    late = [n for n in range(requests - 3) if started.index(n) > started.index(n + 3)]
    assert late == [], f"runs started out of sequence order: {started}"
    assert _registry_left("o-wide", None, "o-wide", limit=3) == [], "every registered event was admitted"


# Its first event's message is lost by hand: under ``make chaos``'s duplicates a copy of it may still come (as
# SQS may deliver a deleted message's copy), and then its run does come.
@pytest.mark.usefixtures("steady_requests")
def test_an_event_whose_run_never_comes_holds_the_others_back_only_until_its_bound(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 0.5
    monkeypatch.setattr(start_order, "wait_bound", lambda: bound)
    published = time.time()
    stack.publish("o/lane", [{"data": {"n": n}} for n in range(2)])
    (mapping,) = [m for m in stack._local.mappings if m.spec.workflow_id == "o-lane"]
    received = mapping.collect(wait_seconds=0, flush=True)
    received.sort(key=lambda message: json.loads(message["Body"])["event"]["sequence_id"])
    first, second = received
    mapping.delete([first])  # its message is lost (dead-lettered before a run was taken, say)
    mapping.deliver([second])
    (run,) = stack.runs("o-lane")
    assert run["status"] == "queued" and STARTS == [], "the second event's run did not wait for the first"
    while time.time() <= published + bound:  # the first event stops holding it back
        time.sleep(0.05)
    stack.advance(seconds=start_order.MAX_DELAY_SECONDS)  # the parked run's delayed wake-up is due
    stack.drain()
    assert stack.run(run["run_id"])["status"] == "completed" and _started("o-lane") == [1]
    assert _registry_left("o-lane", None, "o-lane") == [], "the lapsed registration was deleted"


def test_a_publish_whose_sending_fails_holds_nothing_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polos.publish import fanout

    def refuse(messages: list[Any]) -> None:
        raise fanout.FanoutError("SQS refused the batch")

    with monkeypatch.context() as patched:
        patched.setattr(fanout, "deliver", refuse)
        answer = stack.request(
            "POST", "/api/v1/events/publish", {"topic": "o/lane", "events": [{"data": {"n": 0}}]}
        )
    assert answer.status >= 500
    assert _registry_left("o-lane", None, "o-lane") == [], "a failed publish left its events registered"
    stack.publish("o/lane", [{"data": {"n": 1}}])
    stack.drain()
    assert _started("o-lane") == [1]


def test_a_step_publishing_registers_with_the_templates_grants() -> None:
    """Under the ``iam`` fault (each function's calls checked against its role as template.yaml renders it):
    the API's registration and the worker's, for ``ctx.step.publish_event``."""
    STARTS.clear()
    with local_stack(APP, aws_faults="iam") as stack:
        stack.publish("o/lane", [{"data": {"n": n}} for n in range(2)])
        stack.invoke("o-publisher", {})
        stack.drain()
        assert sorted(run["status"] for run in stack.runs("o-lane")) == ["completed"] * 4
        assert _registry_left("o-lane", None, "o-lane") == []
        assert not stack.fault_counts().get("iam"), "a call was refused: the template lacks its grant"


def test_without_strict_order_nothing_is_registered_and_the_queued_runs_start_by_sequence_id(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default: a slot costs its take and its free. Runs that arrive while the slot is held queue and
    start by ``sequence_id`` whatever order SQS delivered them in; a run that finds the slot free starts."""
    read: list[str] = []
    monkeypatch.setattr(start_order, "_before", lambda pk, order, sequence_id: read.append(pk) or [])
    stack.publish("o/loose", [{"data": {"n": n}} for n in range(EVENTS)])
    assert _registry_left("o-loose", None, "o-loose") == [], "a workflow without strict_order registered"
    (mapping,) = [m for m in stack._local.mappings if m.spec.workflow_id == "o-loose"]
    received: list[Any] = []
    while len(received) < EVENTS:
        received += mapping.collect(wait_seconds=0, flush=True)
    received.sort(key=lambda message: json.loads(message["Body"])["event"]["sequence_id"], reverse=True)
    spec = slots.SlotSpec("o-loose", 1, None, "")
    held = slots.Slots().take(spec, "someone-else", time.time() + 60)  # the slot is busy meanwhile
    assert held is not None
    for message in received:  # highest sequence id first: each parks behind the busy slot
        mapping.deliver([message])
    assert sorted(run["status"] for run in stack.runs("o-loose")) == ["queued"] * EVENTS
    slots.release(held, "someone-else")
    stack.drain()
    assert sorted(run["status"] for run in stack.runs("o-loose")) == ["completed"] * EVENTS
    assert _started("o-loose") == list(range(EVENTS)), "queued runs started out of sequence order"
    assert read == [], "a run of a workflow without strict_order read the start-order registry"


@pytest.mark.parametrize(
    "options",
    [
        {"trigger_on_event": "o/x"},  # no queue
        {"trigger_on_event": "o/x", "queue": "o-unlimited"},  # a queue without a limit
        {"queue": {"concurrency_limit": 1}},  # invoked runs: ordered by creation time in the backlog
        {"trigger_on_event": "o/x", "queue": {"concurrency_limit": 1}, "batch_size": 5},
        {
            "trigger_on_event": "o/x",
            "queue": {"concurrency_limit": 1},
            "throttle": {"limit": 1, "period": 1},
        },
    ],
    ids=["no-queue", "no-limit", "invoked", "batch", "throttle"],
)
def test_strict_order_where_it_cannot_apply_fails_at_decoration_naming_the_rule(
    options: dict[str, Any],
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"strict_order=True needs a single-event workflow"):

        @workflow(id="o-bad", strict_order=True, **options)
        async def bad(ctx: WorkflowContext, payload: Any) -> None:
            return None


def test_strict_order_is_a_bool() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"strict_order='yes' is invalid: it must be True or"):

        @workflow(id="o-bad", trigger_on_event="o/x", queue={"concurrency_limit": 1}, strict_order="yes")  # type: ignore[arg-type]
        async def bad(ctx: WorkflowContext, payload: Any) -> None:
            return None


def test_an_admission_whose_answer_was_lost_and_resent_keeps_the_other_ids_pending(stack: Stack) -> None:
    """botocore resends a request whose answer was lost; the resent ``DELETE pending :id`` changes nothing,
    and its answer may name no ``pending``: the item still holds the other ids and must stay."""
    from helpers.worker import answer_lost

    stack.publish("o/lane", [{"data": {"n": n}} for n in range(3)])
    highest = start_order.standing("o-lane", None, "o-lane", 3, time.time(), limit=1)
    assert highest.own is not None and highest.lower == 2
    with answer_lost("UpdateItem", 1) as seen:
        start_order.admitted(highest)
    assert seen[0] == 2, "the admission's UpdateItem was not resent"
    [left] = _registry_left("o-lane", None, "o-lane")
    assert sorted(int(n) for n in left["pending"]["NS"]) == [1, 2], "the admission deleted ids still pending"
    assert start_order.standing("o-lane", None, "o-lane", 3, time.time(), limit=1).lower == 2

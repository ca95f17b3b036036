"""Queues and concurrency keys: at most ``concurrency_limit`` runs of a queue (per key) execute at once,
judged by the step functions' own start and end times; queued runs start when a slot frees, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polos import (
    EventPayload,
    NonRetryableError,
    Queue,
    SchedulePayload,
    WorkflowContext,
    queue,
    workflow,
)
from polos.app import App
from polos.errors import WorkflowDefinitionError
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import slots
from polos.testing import Stack, local_stack

# (workflow, n, key, start, end) of each call of a step function
SPANS: list[tuple[str, int, str | None, float, float]] = []
WORK_SECONDS = 0.2


async def _work(wf: str, n: int, key: str | None) -> int:
    start = time.monotonic()
    await asyncio.sleep(WORK_SECONDS)
    SPANS.append((wf, n, key, start, time.monotonic()))
    return n


@workflow(id="q-single", trigger_on_event="q/single", queue=Queue("q-single-lane", concurrency_limit=1))
async def single_lane(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "q-single", payload.data["n"], None)


@workflow(
    id="q-keyed",
    trigger_on_event="q/keyed",
    queue={"concurrency_limit": 1},
    concurrency_key="data.customer",
)
async def keyed(ctx: WorkflowContext, payload: EventPayload) -> int:
    customer = payload.data["customer"]
    return await ctx.step.run("work", _work, "q-keyed", payload.data["n"], customer)


@workflow(id="q-free", trigger_on_event="q/free")
async def unlimited(ctx: WorkflowContext, payload: EventPayload) -> int:
    return await ctx.step.run("work", _work, "q-free", payload.data["n"], None)


@workflow(id="q-invoked")
async def invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    return await ctx.step.run("work", _work, "q-invoked", payload["n"], payload.get("key"))


@workflow(id="q-pausing", trigger_on_event="q/pausing", queue=Queue("q-pausing-lane", concurrency_limit=1))
async def pausing(ctx: WorkflowContext, payload: EventPayload) -> int:
    await ctx.step.run("before", _work, "q-pausing", payload.data["n"], "before")
    await ctx.step.wait_for("pause", hours=1)
    return await ctx.step.run("after", _work, "q-pausing", payload.data["n"], "after")


@workflow(id="q-failing", trigger_on_event="q/failing", queue=Queue("q-failing-lane", concurrency_limit=1))
async def failing(ctx: WorkflowContext, payload: EventPayload) -> int:
    if payload.data["fail"]:
        raise NonRetryableError("this run fails for good")
    return await ctx.step.run("work", _work, "q-failing", payload.data["n"], None)


@workflow(id="q-cron", schedule="0 3 * * *")
async def nightly(ctx: WorkflowContext, payload: SchedulePayload) -> int:
    return await ctx.step.run("work", _work, "q-cron", payload.timestamp.day, None)


@workflow(id="q-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    for n in range(4):
        await ctx.step.invoke(
            f"child-{n}",
            invoked,
            {"n": n, "key": "k"},
            queue_name="children-lane",
            queue_concurrency_limit=1,
            concurrency_key="k",
        )


APP = App("queues", [single_lane, keyed, unlimited, invoked, pausing, failing, nightly, parent])


def _holders(queue_name: str) -> list[dict[str, Any]]:
    return list(slots.queue_view(queue_name, 1)["holders"])


@pytest.fixture
def stack() -> Iterator[Stack]:
    SPANS.clear()
    with local_stack(APP) as opened:
        yield opened


def _overlaps(spans: list[tuple[str, int, str | None, float, float]]) -> list[tuple[int, int]]:
    ordered = sorted(spans, key=lambda span: span[3])
    return [
        (a[1], b[1])
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if b[3] < a[4]  # b started before a ended
    ]


def _publish(stack: Stack, topic: str, data: list[dict[str, Any]]) -> None:
    stack.publish(topic, [{"data": item} for item in data])


def test_without_a_queue_runs_of_one_delivery_overlap(stack: Stack) -> None:
    """The control: the limit tests below would pass vacuously if runs never overlapped anyway."""
    _publish(stack, "q/free", [{"n": n} for n in range(4)])
    stack.drain()
    assert len(SPANS) == 4 and _overlaps(SPANS)


def test_four_runs_on_a_queue_of_limit_one_never_overlap_and_start_in_sequence_order(stack: Stack) -> None:
    _publish(stack, "q/single", [{"n": n} for n in range(4)])
    stack.drain()
    runs = stack.runs("q-single")
    assert sorted(run["status"] for run in runs) == ["completed"] * 4
    assert sorted(span[1] for span in SPANS) == [0, 1, 2, 3]  # each step function ran once
    assert _overlaps(SPANS) == []
    started = [span[1] for span in sorted(SPANS, key=lambda span: span[3])]
    assert started[1:] == sorted(started[1:])  # after the first taker, the backlog by sequence_id
    assert all(run["attempts"] == 1 for run in runs)  # queueing executed nothing, counted nothing


def test_a_concurrency_key_limits_each_key_alone(stack: Stack) -> None:
    # Key "a"'s one slot is held elsewhere: "b" runs, "a" waits for that slot.
    spec = slots.SlotSpec("q-keyed", 1, "a", "a")
    holder = slots.Slots().take(spec, "run_outsider", time.time() + 3600)
    _publish(stack, "q/keyed", [{"n": 10, "customer": "a"}, {"n": 11, "customer": "b"}])
    stack.drain()
    statuses = {run["status"] for run in stack.runs("q-keyed")}
    assert statuses == {"queued", "completed"} and [span[2] for span in SPANS] == ["b"]
    slots.release(holder, "run_outsider")
    stack.drain()
    SPANS.clear()
    data = [{"n": n, "customer": "a" if n % 2 == 0 else "b"} for n in range(6)]
    _publish(stack, "q/keyed", data)
    stack.drain()
    assert len(SPANS) == 6
    by_key = {key: [span for span in SPANS if span[2] == key] for key in ("a", "b")}
    assert _overlaps(by_key["a"]) == [] and _overlaps(by_key["b"]) == []
    assert _overlaps(SPANS), "runs of two keys never overlapped: the limit is not per key"


def test_an_invoked_runs_queue_name_limit_and_key_are_honoured(stack: Stack) -> None:
    for n in range(6):
        key = "x" if n % 2 == 0 else "y"
        body = {
            "payload": {"n": n, "key": key},
            "queue_name": "invoked-lane",
            "queue_concurrency_limit": 1,
            "concurrency_key": key,
        }
        answer = stack.request("POST", "/api/v1/workflows/q-invoked/run", body)
        assert answer.status == 202, answer.body
    stack.drain()
    assert len(SPANS) == 6
    by_key = {key: [span for span in SPANS if span[2] == key] for key in ("x", "y")}
    assert _overlaps(by_key["x"]) == [] and _overlaps(by_key["y"]) == []
    assert _overlaps(SPANS)


def test_a_queued_run_shows_what_it_waits_for_and_starts_when_the_slot_frees(stack: Stack) -> None:
    spec = slots.SlotSpec("q-single-lane", 1, None, "a")
    holder = slots.Slots().take(spec, "run_outsider", time.time() + 3600)
    assert holder is not None
    _publish(stack, "q/single", [{"n": 7}])
    stack.drain()
    (run,) = stack.runs("q-single")
    assert run["status"] == "queued" and run["attempts"] == 0
    assert run["waiting_for"] == {"kind": "concurrency", "queue": "q-single-lane", "key": None}
    assert SPANS == []
    listed = stack.request("GET", "/api/v1/runs?workflow_id=q-single&status=queued").body
    assert [entry["run_id"] for entry in listed["runs"]] == [run["run_id"]]
    shown = stack.request("GET", "/api/v1/queues/q-single-lane").body
    assert shown["concurrency_limit"] == 1 and shown["workflows"] == ["q-single"]
    assert shown["holders"] == [{"run_id": "run_outsider", "key": None}]
    assert shown["backlog"] == [{"key": None, "run_ids": [run["run_id"]], "count": 1}]
    slots.release(holder, "run_outsider")  # the holder ends: its slot goes to the backlog's first run
    stack.drain()
    assert stack.run(run["run_id"])["status"] == "completed" and len(SPANS) == 1
    shown = stack.request("GET", "/api/v1/queues/q-single-lane").body
    assert (shown["holders"], shown["backlog"]) == ([], [])  # the run's slot went back when it ended
    assert stack.request("GET", "/api/v1/queues/no-such-queue").status == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queue_name", "bad name"),
        ("queue_concurrency_limit", 0),
        ("queue_concurrency_limit", "2"),
        ("concurrency_key", ""),
    ],
)
def test_bad_queue_fields_of_a_run_request_are_a_400_naming_the_field(
    stack: Stack, field: str, value: Any
) -> None:
    answer = stack.request("POST", "/api/v1/workflows/q-invoked/run", {"payload": {"n": 1}, field: value})
    assert answer.status == 400 and field in answer.body["error"], answer.body


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": {"concurrency_limit": 0}}, r"queue.concurrency_limit=0 is invalid"),
        ({"queue": {"limit": 2}}, r"a dict must be exactly"),
        ({"queue": "bad name"}, r"queue name 'bad name' is invalid"),
        ({"queue": 3}, r"queue=3 is invalid"),
        ({"queue": {"concurrency_limit": 1}, "concurrency_key": "data..x"}, r"concurrency_key='data..x'"),
        ({"concurrency_key": "data.x"}, r"needs a queue with a concurrency_limit"),
        ({"max_concurrency": 1}, r"max_concurrency=1 is invalid.*2 <= max_concurrency <= 1000"),
        ({"max_concurrency": 1001}, r"max_concurrency=1001 is invalid"),
    ],
)
def test_bad_queue_options_fail_at_decoration_naming_the_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):

        @workflow(id="bad-queue", trigger_on_event="q/bad", **options)
        async def bad(ctx: WorkflowContext, payload: EventPayload) -> None: ...


def test_a_key_needs_a_single_event_workflow_and_a_queue_a_valid_limit() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"needs a single-event workflow"):

        @workflow(id="bad-invoked", queue={"concurrency_limit": 1}, concurrency_key="data.x")
        async def bad(ctx: WorkflowContext, payload: dict[str, Any]) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match=r"concurrency_limit=-1 is invalid"):
        queue("lane", -1)
    assert queue("lane-ok", 3) == Queue("lane-ok", 3)


def test_a_waiting_run_gives_its_slot_back_and_takes_one_again_when_it_wakes(stack: Stack) -> None:
    _publish(stack, "q/pausing", [{"n": 0}, {"n": 1}])
    stack.drain()
    # Both ran up to their wait: the first gave its slot back when it began waiting.
    assert sorted(run["status"] for run in stack.runs("q-pausing")) == ["waiting", "waiting"]
    assert _holders("q-pausing-lane") == []
    stack.advance(hours=1)
    stack.drain()
    assert sorted(run["status"] for run in stack.runs("q-pausing")) == ["completed", "completed"]
    afters = [span for span in SPANS if span[2] == "after"]
    assert len(afters) == 2 and _overlaps(afters) == []
    assert _holders("q-pausing-lane") == []


def test_a_failed_run_frees_its_slot_and_a_cancelled_queued_run_leaves_the_backlog(stack: Stack) -> None:
    _publish(stack, "q/failing", [{"n": 0, "fail": True}, {"n": 1, "fail": False}])
    stack.drain()
    assert sorted(run["status"] for run in stack.runs("q-failing")) == ["completed", "failed"]
    assert _holders("q-failing-lane") == []
    spec = slots.SlotSpec("q-single-lane", 1, None, "a")
    holder = slots.Slots().take(spec, "run_outsider", time.time() + 3600)
    _publish(stack, "q/single", [{"n": 5}])
    stack.drain()
    (queued,) = stack.runs("q-single")
    assert stack.request("POST", f"/api/v1/runs/{queued['run_id']}/cancel").status == 200
    assert stack.request("GET", "/api/v1/queues/q-single-lane").body["backlog"] == []
    slots.release(holder, "run_outsider")
    stack.drain()
    assert stack.run(queued["run_id"])["status"] == "cancelled" and SPANS[-1][0] == "q-failing"


def test_a_scheduled_workflow_runs_one_firing_at_a_time(stack: Stack) -> None:
    firings = [f"2026-11-{day:02d}T03:00:00Z" for day in (1, 2, 3)]
    deliver([WorkflowMessage("q-cron", "schedule", scheduled_time=fired) for fired in firings])
    stack.drain()
    assert sorted(run["status"] for run in stack.runs("q-cron")) == ["completed"] * 3
    assert len(SPANS) == 3 and _overlaps(SPANS) == []


def test_children_started_by_step_invoke_honour_their_queue_arguments(stack: Stack) -> None:
    stack.invoke("q-parent", {})
    stack.drain()
    children = stack.runs("q-invoked")
    assert sorted(run["status"] for run in children) == ["completed"] * 4
    assert len(SPANS) == 4 and _overlaps(SPANS) == []


def test_a_slot_taken_queued_for_and_handed_on_is_granted_by_the_template() -> None:
    """The scenario above under the ``iam`` fault: each function's calls checked against its role as
    template.yaml renders it (the worker's backlog DeleteItem, the queues route's GetItem of the shards)."""
    SPANS.clear()
    with local_stack(APP, aws_faults="iam") as stack:
        test_a_queued_run_shows_what_it_waits_for_and_starts_when_the_slot_frees(stack)

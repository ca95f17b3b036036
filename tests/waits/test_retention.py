"""A waiting run, and everything it reads when it wakes, lives as long as it waits (DESIGN §3 Waits).

Items expire by TTL a retention period (30 days) after they are written. moto does not run TTL, so these
tests check the ``expires_at`` values and simulate TTL (``helpers.ttl.expire``: delete what expired on the
moved wait clock), a day at a time when the keep-alive of an untimed wait must fire in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from helpers.ttl import event_expiries, expire, expiries
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.testing import Stack, local_stack

from infra.local.faults.config import AwsFaults
from infra.metering.meter import Call, Crash, Meter

DAY = 86_400


@workflow(id="ret-batch", trigger_on_event="ret/batch", batch_size=3, batch_timeout_seconds=1)
async def ret_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> list[int]:
    await ctx.step.wait_for("nap", days=60)
    return [event.data["n"] for event in payload.events]


@workflow(id="ret-single", trigger_on_event="ret/single")
async def ret_single(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.wait_for("nap", days=60)
    return payload.data


@workflow(id="ret-approve", trigger_on_event="ret/approve")
async def ret_approve(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    approval = await ctx.step.suspend("approve")
    return {"n": payload.data["n"], "approval": approval}


@workflow(id="ret-listen")
async def ret_listen(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    heard = await ctx.step.wait_for_event("hear", "ret/news")
    return {"asked": payload["ask"], "heard": heard.data}


@workflow(id="ret-child")
async def ret_child(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    go = await ctx.step.suspend("go")
    return {"child": payload["n"], "go": go}


@workflow(id="ret-parent")
async def ret_parent(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.step.invoke_and_wait("child", "ret-child", {"n": payload["n"]})
    return result


APP = App("retention", [ret_batch, ret_single, ret_approve, ret_listen, ret_child, ret_parent])


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(APP) as opened:
        yield opened


@pytest.fixture
def short_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A 4-day retention (a day's margin): waits of 10 days outlive it twice, a day at a time."""
    monkeypatch.setenv(settings.ENV_RETENTION_DAYS, "4")
    settings.reset()
    with local_stack(APP) as opened:
        assert retention() == 4 * DAY
        yield opened
    settings.reset()


def retention() -> int:
    return settings.get_settings().retention_seconds


def live_through(stack: Stack, days: int) -> None:
    """Let ``days`` pass a day at a time: TTL deletes what expired, then timers fire and queues drain."""
    for _ in range(days):
        stack.advance(days=1)
        expire()
        stack.drain()


def only_run(stack: Stack, workflow_id: str) -> dict[str, Any]:
    runs = stack.runs(workflow_id)
    assert len(runs) == 1, runs
    return runs[0]


def until_of(run: dict[str, Any]) -> float:
    return datetime.fromisoformat(run["waiting_for"]["until"].replace("Z", "+00:00")).timestamp()


# --- timed waits: the run's input lives as long as its wait -------------------------------------------


def test_a_batch_run_waiting_past_the_retention_wakes_with_all_its_events(stack: Stack) -> None:
    """One batch of the three events; under ``make chaos``'s several pollers (as Lambda's) they may come in
    two batches: each run wakes with all of its own events."""
    stack.publish("ret/batch", [{"data": {"n": n}} for n in (1, 2, 3)])
    stack.drain()
    runs = stack.runs("ret-batch")
    assert runs and all(run["status"] == "waiting" for run in runs), runs
    if not AwsFaults.resolve().enabled:
        assert len(runs) == 1, runs
    kept = min(until_of(run) for run in runs) + retention() - 1
    assert all(at >= kept for at in event_expiries("ret/batch").values()), "the batch's events expire first"
    assert all(at >= kept for run in runs for at in expiries(run["run_id"]).values())
    stack.advance(days=60)
    expire()
    stack.drain()
    woke = [stack.run(run["run_id"]) for run in runs]
    assert all(run["status"] == "completed" for run in woke), woke
    assert sorted(n for run in woke for n in run["result"]) == [1, 2, 3], woke


def test_an_event_run_waiting_past_the_retention_keeps_its_event(stack: Stack) -> None:
    stack.publish("ret/single", [{"data": {"n": 7}}])
    stack.drain()
    run = only_run(stack, "ret-single")
    stack.advance(days=60)
    expire()
    stack.drain()
    woke = stack.run(run["run_id"])
    assert woke["status"] == "completed" and woke["result"] == {"n": 7}, woke


def test_a_wait_within_the_retention_extends_nothing(stack: Stack) -> None:
    """Cheap: a wait that ends long before anything expires writes no TTL at all."""
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    try:
        stack.publish("ret/approve", [{"data": {"n": 1}}])
        before = event_expiries("ret/approve")
        stack.drain()
        run = only_run(stack, "ret-approve")
        assert run["status"] == "waiting"
        events_table = settings.get_settings().events_table
        event_updates = [
            call
            for call in meter.select("dynamodb")
            if call.operation == "UpdateItem"
            and call.params.get("TableName") == events_table
            and call.params["Key"]["pk"]["S"].startswith("topic#")
        ]
        assert event_updates == [], "an untimed wait far from the retention extended its event"
        assert event_expiries("ret/approve") == before
        # resumed on day 2: nothing was extended, so nothing outlives the retention counted from its end
        stack.advance(days=2)
        assert (
            stack.request(
                "POST", f"/api/v1/runs/{run['run_id']}/resume", {"step_key": "approve", "data": {"ok": 1}}
            ).status
            == 200
        )
        stack.drain()
        assert stack.run(run["run_id"])["status"] == "completed"
        created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00")).timestamp()
        assert all(at <= created + retention() + 60 for at in expiries(run["run_id"]).values())
        assert event_expiries("ret/approve") == before
    finally:
        meter.detach()


# --- untimed waits: the run lives until it is resumed or cancelled ---------------------------------------


def test_a_suspended_event_run_outlives_the_retention_and_can_be_resumed(short_stack: Stack) -> None:
    short_stack.publish("ret/approve", [{"data": {"n": 4}}])
    short_stack.drain()
    run_id = only_run(short_stack, "ret-approve")["run_id"]
    live_through(short_stack, 10)
    assert short_stack.run(run_id)["status"] == "waiting"
    answer = short_stack.request(
        "POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": {"ok": 1}}
    )
    assert answer.status == 200, answer.body
    short_stack.drain()
    run = short_stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"n": 4, "approval": {"ok": 1}}, run


def test_a_wait_for_event_without_timeout_outlives_the_retention(short_stack: Stack) -> None:
    run_id = short_stack.invoke("ret-listen", {"ask": "news?"})
    short_stack.drain()
    live_through(short_stack, 10)
    kept = short_stack.run(run_id)
    # Kept alive past the retention: its waiter registers again each week (a replay that runs no step again:
    # see polos.publish.waiters), its input and partition are kept by the keep-alive in between.
    assert kept["status"] == "waiting"
    short_stack.publish("ret/news", [{"data": {"said": "hello"}}])
    short_stack.drain()
    run = short_stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"asked": "news?", "heard": {"said": "hello"}}, (
        run
    )


def test_invoke_and_wait_without_timeout_outlives_the_retention(short_stack: Stack) -> None:
    parent_id = short_stack.invoke("ret-parent", {"n": 9})
    short_stack.drain()
    child_id = short_stack.run(parent_id)["waiting_for"]["child"]
    live_through(short_stack, 10)
    answer = short_stack.request(
        "POST", f"/api/v1/runs/{child_id}/resume", {"step_key": "go", "data": {"go": 1}}
    )
    assert answer.status == 200, answer.body
    short_stack.drain()
    parent = short_stack.run(parent_id)
    assert parent["status"] == "completed" and parent["result"] == {"child": 9, "go": {"go": 1}}, parent


def test_a_cancelled_untimed_wait_is_kept_no_longer(short_stack: Stack) -> None:
    short_stack.publish("ret/approve", [{"data": {"n": 5}}])
    short_stack.drain()
    run_id = only_run(short_stack, "ret-approve")["run_id"]
    live_through(short_stack, 6)
    assert short_stack.request("POST", f"/api/v1/runs/{run_id}/cancel").status == 200
    short_stack.drain()
    live_through(short_stack, 10)  # its keep-alive still fires once; nothing is extended again
    assert short_stack.request("GET", f"/api/v1/runs/{run_id}").status == 404


# --- a crash between the writes never leaves a waiting run with an input that expires first ----------------


@pytest.mark.usefixtures("steady_requests")  # a crash matrix: one batch run per crash point
def test_a_crash_at_any_request_never_leaves_a_run_waiting_with_inputs_that_expire_first(
    stack: Stack,
) -> None:
    """One batch run per crash point: its first attempt dies after its k-th AWS request; then and after the
    redelivery, a run that is ``waiting`` has every item and event it reads kept past its wait."""
    made: int | None = None
    checked: set[str] = set()
    point = 0  # 0: a dry run, counting the requests
    while made is None or point <= made:
        meter = Meter()
        meter.attach(settings.dynamodb(), settings.sqs())
        stack.publish("ret/batch", [{"data": {"n": n}} for n in (1, 2, 3)])
        meter.reset()
        meter.crash_after(point or None, where=_attempt_request)
        with contextlib.suppress(Crash):  # the timers sweep died; it runs again at the next drain
            stack.drain()
        if made is None:
            made = len([call for call in meter.calls if _attempt_request(call)])
        assert point == 0 or not meter.crash_pending, f"no crash at request {point}"
        meter.detach()
        before = len(checked)
        _assert_waiting_means_kept(stack, checked)
        stack.drain()
        _assert_waiting_means_kept(stack, checked)
        # Each point left a waiting run to check (two when the crash split the batch's events over two runs).
        assert len(checked) > before, f"no waiting run to check after a crash at request {point}"
        point += 1


def _attempt_request(call: Call) -> bool:
    """A DynamoDB request of the worker's attempt (not the timers sweep's look at its shards)."""
    values = call.params.get("ExpressionAttributeValues", {})
    return call.service == "dynamodb" and not str(values.get(":pk", {}).get("S", "")).startswith("timer#")


def _assert_waiting_means_kept(stack: Stack, checked: set[str]) -> None:
    """Every ``waiting`` run not checked before keeps its partition and events past its wait (a checked
    one stays so: TTLs are only ever moved up)."""
    page = stack.request("GET", "/api/v1/runs?workflow_id=ret-batch&status=waiting&limit=100").body
    fresh = [run for run in page["runs"] if run["run_id"] not in checked]
    if not fresh:
        return
    by_id = {event["id"]: event["sequence_id"] for event in stack.events("ret/batch")}
    expiring = event_expiries("ret/batch")
    for run in fresh:
        kept = until_of(run) + retention() - 1
        assert all(expiring[by_id[event_id]] >= kept for event_id in run["trigger"]["event_ids"]), run
        assert all(at >= kept for at in expiries(run["run_id"]).values()), run
        checked.add(run["run_id"])

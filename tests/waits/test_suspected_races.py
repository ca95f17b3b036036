"""Issue 20's suspected races, each settled: a completion landing while the run is being parked, a cancel
or resume retried after its answer was lost, the last receive of a healthy waiting run, and step keys
past DynamoDB's sort-key limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.worker import answer_lost
from polos import PolosClient, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import timers
from polos.testing import Stack, local_stack

from infra.local.mapping import EventSourceMapping
from infra.local.testing import SimulatedCrash
from infra.metering.meter import Call, Meter

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


def dies_four_times() -> str:
    """Kills the worker on its first four calls (Lambda timeouts), then returns."""
    count("flaky")
    if calls["flaky"] <= 4:
        raise SimulatedCrash("the worker died")
    return "ok"


@workflow(id="sr-approval")
async def approval(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("flaky"):
        await ctx.step.run("flaky", dies_four_times)
    decision = await ctx.step.suspend("approve")
    await ctx.step.run("after", count, "after")
    return decision


@workflow(id="sr-kid")
async def kid(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    return 7


@workflow(id="sr-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    doubled = int(await ctx.step.invoke_and_wait("kid", kid, {})) * 2
    await ctx.step.run("after", count, "after")
    return doubled


@workflow(id="sr-keys")
async def keyed(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    if payload.get("suspend"):  # an event waiter's sort key holds the key too
        await ctx.step.suspend(payload["key"])
    else:
        await ctx.step.run(payload["key"], count, "keyed")  # journaled in its own item when "next" starts
    return str(await ctx.step.run("next", count, "next"))


APP = App("suspected-races", [approval, kid, parent, keyed])


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(APP) as opened:
        yield opened


def mapping_of(stack: Stack, workflow_id: str) -> EventSourceMapping:
    return next(m for m in stack._local.mappings if m.spec.workflow_id == workflow_id)


def marks_waiting(call: Call) -> bool:
    values = call.params.get("ExpressionAttributeValues", {})
    return call.ok and call.operation == "UpdateItem" and values.get(":status") == {"S": "waiting"}


# --- (d) the last receive of a message whose run is healthy and waiting ----------------------------------


def test_the_last_receive_of_a_message_whose_run_waits_healthy_does_not_dead_letter_it(stack: Stack) -> None:
    """Four deliveries die; the fifth parks the run ``waiting`` and dies right after: the message's sixth
    and last receive finds a healthy waiting run, acknowledges it and leaves the run to its resume."""
    run_id = stack.invoke("sr-approval", {"flaky": True})
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    meter.crash_after(1, where=marks_waiting)
    stack.drain()
    meter.detach()
    assert not meter.crash_pending and calls == {"flaky": 5}
    assert stack.run(run_id)["status"] == "waiting"
    assert stack.dead_letters("sr-approval") == []
    body = {"step_key": "approve", "data": {"ok": 1}}
    answer = stack.request("POST", f"/api/v1/runs/{run_id}/resume", body)
    assert answer.status == 200, answer.body
    stack.drain()
    assert stack.run(run_id)["result"] == {"ok": 1}


# --- (e) step keys past DynamoDB's 1,024-byte sort key ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suspend"),
    [("é" * 512, False), ("鍵" * 340, False), ("é" * 505, True)],  # 1,024, 1,020, 1,010 bytes in UTF-8
    ids=["step-item-2-byte", "step-item-3-byte", "event-waiter"],  # `step#<key>`, `<run id>#<key>`
)
def test_a_step_key_whose_sort_key_passes_1024_bytes_fails_the_run_naming_the_step(
    stack: Stack, key: str, suspend: bool
) -> None:
    run_id = stack.invoke("sr-keys", {"key": key, "suspend": suspend})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "failed" and run["attempts"] == 1, run
    assert run["error"]["type"] == "StepKeyError", run["error"]
    assert key[:20] in run["error"]["message"] and "1024 bytes" in run["error"]["message"]
    assert calls == {}


def test_a_long_non_ascii_step_key_within_the_limit_is_journaled(stack: Stack) -> None:
    key = "é" * 490  # 980 bytes: its journal item and an event waiter's sort key both fit
    run_id = stack.invoke("sr-keys", {"key": key})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and [step["key"] for step in run["steps"]] == [key, "next"]


# --- (b) a cancel or resume applied, its answer lost, then retried -----------------------------------------


def test_a_cancel_whose_answer_was_lost_answers_200_and_so_does_cancelling_again(stack: Stack) -> None:
    run_id = stack.invoke("sr-approval", {})
    stack.drain()
    with answer_lost("UpdateItem", 1) as seen:  # applied, answer lost: botocore sends it again
        first = stack.request("POST", f"/api/v1/runs/{run_id}/cancel")
    assert seen[0] >= 2
    assert first.status == 200 and first.body["status"] == "cancelled", first.body
    again = stack.request("POST", f"/api/v1/executions/{run_id}/cancel")  # the client's own retry
    assert again.status == 200 and again.body["status"] == "cancelled", again.body

    done = stack.invoke("sr-kid", {})
    stack.drain()
    finished = stack.request("POST", f"/api/v1/runs/{done}/cancel")
    assert finished.status == 409 and "completed" in finished.body["error"]


def test_a_resume_retried_with_its_idempotency_key_answers_like_the_first(stack: Stack) -> None:
    run_id = stack.invoke("sr-approval", {})
    stack.drain()
    path, body = f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": {"ok": 1}}

    def resume(key: str | None) -> Any:
        return stack.request("POST", path, body, {"Idempotency-Key": key} if key else None)

    with answer_lost("UpdateItem", 1) as seen:  # the step's completion applied, its answer lost
        first = resume("k1")
    assert seen[0] >= 2
    assert first.status == 200 and first.body["run_id"] == run_id, first.body
    assert resume("k1").status == 200  # the client's retry after a lost answer
    assert resume("k2").status == 409 and resume(None).status == 409  # another resume
    stack.drain()
    assert stack.run(run_id)["result"] == {"ok": 1} and calls == {"after": 1}
    late = resume("k1")  # retried after the run finished: still the first answer
    assert late.status == 200 and late.body["status"] == "completed"


def test_polos_client_resume_sends_an_idempotency_key() -> None:
    sent: list[dict[str, str]] = []

    class Recording(PolosClient):
        def request(
            self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
        ) -> Any:
            sent.append(dict(headers or {}))
            return {}

    client = Recording(base_url="http://polos.invalid", api_key="k")
    asyncio.run(client.resume("run_a", "approve", {"ok": 1}))
    asyncio.run(client.resume("run_a", "approve", {"ok": 1}))
    asyncio.run(client.resume("run_a", "approve", {"ok": 1}, idempotency_key="mine"))
    keys = [headers.get("Idempotency-Key") for headers in sent]
    assert keys[0] and keys[1] and keys[0] != keys[1] and keys[2] == "mine"


# --- (a) a completion landing between the wait step's journal and the run marked `waiting` -----------------


def deliver_visible(stack: Stack, *workflow_ids: str) -> None:
    """Deliver what the queues show now, until they show nothing (a message in flight is not waited for:
    one that was bounced comes back only after its visibility timeout, 12 minutes deployed)."""
    mappings = [mapping_of(stack, workflow_id) for workflow_id in workflow_ids]
    while any([mapping.poll(wait_seconds=0, flush=True) is not None for mapping in mappings]):
        pass


@pytest.mark.parametrize("completer", ["resume", "child"])
def test_a_completion_landing_while_the_run_is_being_parked_wakes_it_at_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, completer: str
) -> None:
    """The wait step is journaled, the run not yet ``waiting``: the resume (or the child's end) completes
    the step and its wake-up, delivered by another poller at that moment, finds the run busy and is left."""
    workflow_id = "sr-approval" if completer == "resume" else "sr-parent"
    run_id = stack.invoke(workflow_id, {})
    arm = timers.arm
    landed: list[str] = []

    def land_then_arm(*args: Any, **kwargs: Any) -> Any:
        if not landed:  # the parking attempt sets its wake-up right before marking the run `waiting`
            landed.append(completer)
            if completer == "resume":
                body = {"step_key": "approve", "data": {"ok": 1}}
                assert stack.request("POST", f"/api/v1/runs/{run_id}/resume", body).status == 200
            else:
                deliver_visible(stack, "sr-kid")  # the child runs and ends: it completes the parent's step
            bounced = mapping_of(stack, workflow_id).poll(wait_seconds=0, flush=True)
            assert bounced is not None and bounced.failed, "the wake-up was not delivered while busy"
        return arm(*args, **kwargs)

    monkeypatch.setattr(timers, "arm", land_then_arm)
    deliver_visible(stack, workflow_id, "sr-kid")
    assert landed == [completer]
    run = stack.run(run_id)
    assert run["status"] == "completed", run
    assert calls == {"after": 1}

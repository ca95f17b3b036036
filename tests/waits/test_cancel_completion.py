"""A cancel asked for while the run is ``running`` is applied by the worker when the attempt parks the run
``waiting``. Its whole effect (the run ``cancelled``, the child it waited for cancelled, its parent told)
completes on any redelivery: after a crash right after the run item became ``cancelled``, after a crash
right after the run became ``waiting``, and after the answer of ``finish(waiting)`` was lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.errors import StepExecutionError
from polos.testing import Stack, local_stack

from infra.metering.meter import Call, Meter

pytestmark = pytest.mark.usefixtures("steady_requests")

calls: dict[str, int] = {}
_stack: list[Stack] = []


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


def ask_cancel(run_id: str) -> str:
    """A step that asks for its own run's cancel: the run is ``running`` now."""
    answer = _stack[0].request("POST", f"/api/v1/runs/{run_id}/cancel")
    assert answer.status == 200 and answer.body["status"] == "running", answer
    return count("ask_cancel")


@workflow(id="cx-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("child_step", count, "child_step")
    await ctx.step.wait_for("nap", days=1)
    await ctx.step.run("child_after", count, "child_after")
    return 1


@workflow(id="cx-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    await ctx.step.run("ask_cancel", ask_cancel, ctx.run_id)
    if payload.get("suspend"):
        return await ctx.step.suspend("approve")
    return await ctx.step.invoke_and_wait("kid", child, {})


@workflow(id="cx-grandparent")
async def grandparent(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, str]:
    try:
        await ctx.step.invoke_and_wait("parent", parent, payload)
    except StepExecutionError as exc:
        return {"parent_ended": str(exc)}
    return {}


APP = App("cancel-completion", [child, parent, grandparent])


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(APP) as opened:
        _stack[:] = [opened]
        yield opened
    _stack.clear()


def update_setting(name: str, value: str) -> Callable[[Call], bool]:
    """An UpdateItem that took effect and set ``name`` (an expression value) to ``value``."""

    def chosen(call: Call) -> bool:
        values = call.params.get("ExpressionAttributeValues", {})
        return call.ok and call.operation == "UpdateItem" and values.get(name) == {"S": value}

    return chosen


def drain_crashing_after(stack: Stack, where: Callable[[Call], bool]) -> None:
    """Drain the queues; the worker dies right after the first request ``where`` selects took effect."""
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    meter.crash_after(1, where=where)
    stack.drain()
    meter.detach()
    assert not meter.crash_pending, "the crash point was never reached"


def check_cancelled_with_its_child(stack: Stack, run_id: str) -> None:
    run = stack.run(run_id)
    assert run["status"] == "cancelled", run
    (kid,) = run["children"]
    assert stack.run(kid)["status"] == "cancelled", stack.run(kid)
    stack.advance(days=2)  # the child's timer fires: turned away
    stack.drain()
    assert stack.run(kid)["status"] == "cancelled"
    assert calls == {"ask_cancel": 1, "child_step": 1}  # no step function after the cancel


def test_a_crash_right_after_the_worker_cancelled_the_run_still_cancels_the_child_it_waited_for(
    stack: Stack,
) -> None:
    run_id = stack.invoke("cx-parent", {})
    drain_crashing_after(stack, update_setting(":cancelled", "cancelled"))
    check_cancelled_with_its_child(stack, run_id)


def test_a_crash_right_after_the_worker_cancelled_a_child_run_still_tells_its_parent(stack: Stack) -> None:
    top = stack.invoke("cx-grandparent", {})
    drain_crashing_after(stack, update_setting(":cancelled", "cancelled"))
    (run_id,) = stack.run(top)["children"]
    check_cancelled_with_its_child(stack, run_id)
    outcome = stack.run(top)
    assert outcome["status"] == "completed" and "RunCancelledError" in outcome["result"]["parent_ended"]


def test_a_crash_right_after_the_run_became_waiting_with_a_cancel_asked_still_cancels_it(
    stack: Stack,
) -> None:
    run_id = stack.invoke("cx-parent", {})
    drain_crashing_after(stack, update_setting(":status", "waiting"))
    check_cancelled_with_its_child(stack, run_id)


@contextmanager
def answer_of_waiting_lost() -> Iterator[list[int]]:
    """The first ``finish(waiting)`` UpdateItem is applied, then its answer is lost (botocore retries it)."""
    from botocore.exceptions import ConnectionClosedError
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__
    lost: list[int] = []

    def answer(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        response = original(self, event_name, request, **kwargs)
        if event_name.endswith(".UpdateItem") and not lost:
            values = json.loads(request.body or b"{}").get("ExpressionAttributeValues", {})
            if values.get(":status") == {"S": "waiting"}:
                lost.append(1)
                raise ConnectionClosedError(endpoint_url=request.url)
        return response

    BotocoreStubber.__call__ = answer  # type: ignore[method-assign]
    try:
        yield lost
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


def test_a_lost_answer_of_finish_waiting_does_not_hide_a_cancel_asked_meanwhile(stack: Stack) -> None:
    run_id = stack.invoke("cx-parent", {"suspend": True})
    with answer_of_waiting_lost() as lost:
        stack.drain()
    assert lost == [1]
    run = stack.run(run_id)
    assert run["status"] == "cancelled", run
    assert calls == {"ask_cancel": 1}

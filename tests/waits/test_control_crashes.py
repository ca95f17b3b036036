"""A crash right after any AWS request of cancelling, resuming, and starting or ending a child run: no step
function runs after ``cancelled``, a cancel that died halfway is finished by its retry, a resume whose
answer was lost resumes the run once, a child is started once and its parent resumed once.

The API side dies as a request (its client retries it); the workflow side as a worker invocation (its
message comes back)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers.crash_points import crash_points, crashing
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.errors import StepExecutionError
from polos.testing import local_stack

pytestmark = pytest.mark.usefixtures("steady_requests")

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="cc-approval")
async def approval(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.step.run("ask", count, "ask")
    decision = await ctx.step.suspend("approve")
    await ctx.step.run("after", count, "after")
    return decision


@workflow(id="cc-order")
async def order(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    paid = await ctx.step.wait_for_event("paid", "cc/paid", match={"id": payload["id"]})
    await ctx.step.run("after", count, "after")
    return int(paid.data["n"])


@workflow(id="cc-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("child_step", count, "child_step")
    if payload.get("wait"):
        await ctx.step.wait_for("nap", days=1)
        await ctx.step.run("child_after", count, "child_after")
    return int(payload["n"]) * 2


@workflow(id="cc-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    try:
        doubled = await ctx.step.invoke_and_wait("kid", child, payload)
    except StepExecutionError as exc:
        return {"child_failed": str(exc)}
    await ctx.step.run("after", count, "after")
    return doubled


APP = App("control-crashes", [approval, order, child, parent])


def waiters_of(topic: str) -> int:
    """The topic's event waiter items, in every partition of its index (a test's Scan)."""
    answer = settings.dynamodb().scan(
        TableName=settings.get_settings().events_table,
        FilterExpression="pk = :matchless OR begins_with(pk, :indexed)",
        ExpressionAttributeValues={":matchless": {"S": f"wait#{topic}"}, ":indexed": {"S": f"wait#{topic}#"}},
        ConsistentRead=True,
    )
    return len(answer.get("Items", []))


def every_point(lifecycle: Callable[[int | None], int], at_least: int) -> None:
    points = lifecycle(None)
    assert points >= at_least
    for n in crash_points(points):
        lifecycle(n)


def cancel_parent(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("cc-parent", {"n": 1, "wait": True})
        stack.drain()
        (kid,) = stack.run(run_id)["children"]
        answers: list[int] = []

        def cancel() -> None:
            answers.append(stack.request("POST", f"/api/v1/runs/{run_id}/cancel").status)

        made = crashing(stack, crash_at, cancel, lambda: stack.run(kid)["status"] == "cancelled")
        # a retry after a crash may find the run already cancelled (200 all the same), and finishes it
        assert answers == [200], answers
        stack.advance(days=2)  # the child's timer fires: turned away, it is cancelled
        stack.drain()
        assert stack.run(run_id)["status"] == "cancelled" and stack.run(kid)["status"] == "cancelled"
        assert calls == {"child_step": 1}  # no step function after cancelled, in parent or child
        return made


def cancel_event_waiter(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("cc-order", {"id": "x"})
        stack.drain()
        assert waiters_of("cc/paid") == 1
        answers: list[int] = []

        def cancel() -> None:
            answers.append(stack.request("POST", f"/api/v1/executions/{run_id}/cancel").status)

        made = crashing(stack, crash_at, cancel, lambda: waiters_of("cc/paid") == 0)
        assert answers == [200], answers
        assert waiters_of("cc/paid") == 0  # the retry removed the waiter the crashed cancel left
        stack.publish("cc/paid", [{"data": {"id": "x", "n": 1}}])
        stack.drain()
        assert stack.run(run_id)["status"] == "cancelled" and calls == {}
        return made


def resume_approval(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("cc-approval", {})
        stack.drain()
        answers: list[int] = []

        def resume() -> None:
            body, key = {"step_key": "approve", "data": {"ok": 1}}, {"Idempotency-Key": "resume-1"}
            answers.append(stack.request("POST", f"/api/v1/runs/{run_id}/resume", body, key).status)

        made = crashing(stack, crash_at, resume, lambda: stack.run(run_id)["status"] == "completed")
        # a resume retried with its Idempotency-Key answers like its first try; the run resumed once
        assert answers == [200], answers
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == {"ok": 1}, run
        assert calls == {"ask": 1, "after": 1}
        return made


def child_run(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("cc-parent", {"n": 21})
        made = crashing(stack, crash_at, lambda: None, lambda: stack.run(run_id)["status"] == "completed")
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == 42, run
        assert [r["run_id"] for r in stack.runs("cc-child")] == run["children"]  # one child, never two
        assert calls == {"child_step": 1, "after": 1}  # the parent resumed once
        return made


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_cancelling_a_waiting_parent_finishes_on_retry() -> None:
    every_point(cancel_parent, at_least=4)


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_cancelling_an_event_wait_removes_its_waiter_on_retry() -> None:
    every_point(cancel_event_waiter, at_least=3)


@pytest.mark.timeout(900)
def test_a_resume_whose_answer_is_lost_and_retried_resumes_the_run_once() -> None:
    every_point(resume_approval, at_least=5)


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_a_child_run_starts_one_child_and_resumes_the_parent_once() -> None:
    every_point(child_run, at_least=10)

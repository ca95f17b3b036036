"""A crash right after any AWS request of a fan-out — starting the children, each child's end, the last
end completing the parent's step, the parent's resume — and of cancelling a fanned-out parent: each child
starts and runs once, the parent resumes once with every outcome in input order, and a cancel that died
halfway is finished by its retry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers.crash_points import crash_points, crashing
from polos import BatchWorkflowInput, WorkflowContext, workflow
from polos.app import App
from polos.testing import local_stack

pytestmark = pytest.mark.usefixtures("steady_requests")

calls: dict[str, int] = {}
CHILDREN = 3


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="fc-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("work", count, f"child{payload['n']}")
    if payload.get("nap"):
        await ctx.step.wait_for("nap", days=1)
        await ctx.step.run("late", count, "late")
    return int(payload["n"]) + 100


@workflow(id="fc-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> list[Any]:
    inputs = [BatchWorkflowInput(id="fc-child", payload={"n": n, **payload}) for n in range(CHILDREN)]
    results = await ctx.step.batch_invoke_and_wait("all", inputs)
    await ctx.step.run("after", count, "after")
    return [result.result for result in results]


APP = App("fanout-crashes", [child, parent])


def every_point(lifecycle: Callable[[int | None], int], at_least: int) -> None:
    points = lifecycle(None)
    assert points >= at_least
    for n in crash_points(points):
        lifecycle(n)


def fan_out(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("fc-parent", {})
        made = crashing(stack, crash_at, lambda: None, lambda: stack.run(run_id)["status"] == "completed")
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == [100, 101, 102], run
        assert len(stack.runs("fc-child")) == CHILDREN  # each child started once
        assert calls["after"] == 1, calls  # the parent resumed once
        # A child's step runs again only when the crash cut it after its call, before its journal write (the
        # children of one delivery run side by side, so where request N falls among them varies with timing).
        assert all(1 <= calls[f"child{n}"] <= (1 if crash_at is None else 2) for n in range(CHILDREN)), calls
        return made


def cancel_fanned_out(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        run_id = stack.invoke("fc-parent", {"nap": True})
        stack.drain()
        assert stack.run(run_id)["status"] == "waiting"
        answers: list[int] = []

        def cancel() -> None:
            answers.append(stack.request("POST", f"/api/v1/runs/{run_id}/cancel").status)

        def all_cancelled() -> bool:
            return [r["status"] for r in stack.runs("fc-child")] == ["cancelled"] * CHILDREN

        made = crashing(stack, crash_at, cancel, all_cancelled)
        assert answers == [200], answers
        stack.advance(days=2)  # the children's timers fire: turned away, they are cancelled
        stack.drain()
        assert stack.run(run_id)["status"] == "cancelled" and all_cancelled()
        assert "late" not in calls and "after" not in calls, calls
        return made


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_a_fan_out_starts_and_resumes_once() -> None:
    every_point(fan_out, at_least=12)


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_cancelling_a_fanned_out_parent_finishes_on_retry() -> None:
    every_point(cancel_fanned_out, at_least=4)

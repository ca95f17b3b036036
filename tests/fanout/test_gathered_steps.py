"""Steps awaited together (``asyncio.gather``, ``asyncio.wait``, ``TaskGroup``) run side by side in one
attempt, each journaled as soon as it completes: when one fails, the others that completed are never run
again by the next attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from polos import WorkflowContext, workflow
from polos.app import App
from polos.testing import local_stack

calls: dict[str, int] = {}
flaky_failures: list[int] = []


async def count(name: str, pause: float = 0.0) -> str:
    await asyncio.sleep(pause)
    calls[name] = calls.get(name, 0) + 1
    return name


async def flaky(name: str) -> str:
    await asyncio.sleep(0.05)  # ends after a and b
    calls[name] = calls.get(name, 0) + 1
    if len(flaky_failures) < 1:
        flaky_failures.append(1)
        raise RuntimeError("c fails once")
    return name


@workflow(id="gs-gather")
async def gathered(ctx: WorkflowContext, payload: dict[str, Any]) -> list[str]:
    return list(
        await asyncio.gather(
            ctx.step.run("a", count, "a"),
            ctx.step.run("b", count, "b", 0.01),
            ctx.step.run("c", flaky, "c", max_retries=0),
        )
    )


@workflow(id="gs-taskgroup")
async def task_group(ctx: WorkflowContext, payload: dict[str, Any]) -> list[str]:
    async with asyncio.TaskGroup() as group:
        first = group.create_task(ctx.step.run("a", count, "a"))
        second = group.create_task(ctx.step.run("b", count, "b", 0.01))
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(ctx.step.run("c", flaky, "c", max_retries=0))],
    )
    return [first.result(), second.result(), *(task.result() for task in done)]


@workflow(id="gs-two-children-parent")
async def two_children(ctx: WorkflowContext, payload: dict[str, Any]) -> list[Any]:
    return list(
        await asyncio.gather(
            ctx.step.invoke_and_wait("x", "gs-child", {"n": 1}),
            ctx.step.invoke_and_wait("y", "gs-child", {"n": 2}),
        )
    )


@workflow(id="gs-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("double", count, f"child{payload['n']}")
    return int(payload["n"]) * 2


APP = App("gathered-steps", [gathered, task_group, two_children, child])


def setup_function() -> None:
    calls.clear()
    flaky_failures.clear()


def test_a_failed_gathered_step_does_not_run_the_completed_ones_again() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("gs-gather", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed", run
        assert run["result"] == ["a", "b", "c"]
        assert calls == {"a": 1, "b": 1, "c": 2}, calls  # a and b were journaled before the attempt ended
        assert [step["key"] for step in run["steps"]] == ["a", "b", "c"]
        assert all(step["status"] == "completed" for step in run["steps"]), run["steps"]


def test_task_group_and_wait_journal_each_step() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("gs-taskgroup", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == ["a", "b", "c"], run
        assert calls == {"a": 1, "b": 1, "c": 2}, calls


def test_gathered_waits_start_both_children_in_one_attempt() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("gs-two-children-parent", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == [2, 4], run
        assert calls == {"child1": 1, "child2": 1}, calls
        # both children were started by the parent's first attempt: it waited once for them
        assert run["attempts"] == 2, run["attempts"]

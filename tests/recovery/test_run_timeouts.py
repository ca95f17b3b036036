"""``run_timeout_seconds``: a run unfinished that long after its creation is ``failed`` with ``RunTimeout``,
also while it waits (its wake-up timer fires at the deadline), and the child it waits for is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.waiting import wait_until
from polos import WorkflowContext, workflow
from polos.app import App
from polos.errors import WorkflowDefinitionError
from polos.testing import Stack, local_stack

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="napper")
async def napper(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("before", count, "before")
    await ctx.step.wait_for("nap", seconds=payload.get("nap", 40))
    return await ctx.step.run("after", count, "after")


@workflow(id="bounded", run_timeout_seconds=60)  # past any drain on a loaded machine
async def bounded(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for_event("never", topic="nothing/comes")
    return "woke"


@workflow(id="slow-step")
async def slow_step(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("slow", asyncio.sleep, 30)
    return "done"


@workflow(id="waits-for-child")
async def waits_for_child(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    return await ctx.step.invoke_and_wait("child", "napper", {"nap": 3600})


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(App("timeouts", [napper, bounded, slow_step, waits_for_child])) as opened:
        yield opened


def invoke(stack: Stack, workflow_id: str, payload: Any, timeout: int | None = None) -> str:
    body: dict[str, Any] = {"payload": payload}
    if timeout is not None:
        body["run_timeout_seconds"] = timeout
    answer = stack.request("POST", f"/api/v1/workflows/{workflow_id}/run", body)
    assert answer.status == 202, answer.body
    run_id: str = answer.body["run_id"]
    return run_id


def failed_in_time(stack: Stack, run_id: str) -> dict[str, Any] | None:
    stack.drain()
    run = stack.run(run_id)
    return run if run["status"] == "failed" else None


def test_a_run_with_a_3_s_timeout_waiting_40_s_fails_with_run_timeout_within_seconds(stack: Stack) -> None:
    run_id = invoke(stack, "napper", {"nap": 40}, timeout=3)
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"
    run = wait_until(lambda: failed_in_time(stack, run_id), 10, "the run failed at its deadline")
    assert run["error"]["type"] == "RunTimeout"
    assert "run_timeout_seconds=3" in run["error"]["message"]
    assert calls == {"before": 1}  # nothing after the wait ran
    assert "waiting_for" not in run


def test_the_workflow_option_bounds_an_event_wait_with_no_timeout_of_its_own(stack: Stack) -> None:
    run_id = invoke(stack, "bounded", {})
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"
    stack.advance(seconds=60)
    run = failed_in_time(stack, run_id)
    assert run is not None and run["error"]["type"] == "RunTimeout"


def test_a_running_step_is_cut_at_the_deadline(stack: Stack) -> None:
    run_id = invoke(stack, "slow-step", {}, timeout=1)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "failed" and run["error"]["type"] == "RunTimeout"


def test_a_timed_out_parent_cancels_the_child_it_waits_for(stack: Stack) -> None:
    parent = invoke(stack, "waits-for-child", {}, timeout=5)
    stack.drain()
    child = stack.run(parent)["steps"][0]["child_run_id"]
    assert stack.run(child)["status"] == "waiting"
    stack.advance(seconds=5)
    stack.drain()
    assert stack.run(parent)["error"]["type"] == "RunTimeout"
    assert stack.run(child)["status"] == "cancelled"


def test_an_invalid_timeout_is_refused_naming_the_field(stack: Stack) -> None:
    for bad in (0, "3", 1.5, 10**9):
        answer = stack.request(
            "POST", "/api/v1/workflows/napper/run", {"payload": {}, "run_timeout_seconds": bad}
        )
        assert answer.status == 400, (bad, answer.body)
        assert "run_timeout_seconds" in answer.body["error"]
    with pytest.raises(WorkflowDefinitionError, match="run_timeout_seconds"):
        workflow(id="bad-timeout", run_timeout_seconds=0)(napper.fn)

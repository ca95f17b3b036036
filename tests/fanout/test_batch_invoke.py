"""``ctx.step.batch_invoke`` / ``batch_invoke_and_wait``: children started once however often the parent
replays, one durable wait resumed once after the last child ended, outcomes in input order."""

from __future__ import annotations

from typing import Any

import pytest
from polos import BatchStepResult, BatchWorkflowInput, WorkflowContext, workflow
from polos.app import App
from polos.errors import NonRetryableError
from polos.testing import local_stack
from pydantic import BaseModel

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="bi-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    n = int(payload["n"])
    await ctx.step.run("work", count, f"child{n}")
    if payload.get("refuse"):
        raise NonRetryableError(f"child {n} refuses")
    if payload.get("nap"):
        await ctx.step.wait_for("nap", days=1)
    return n * 10


@workflow(id="bi-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    await ctx.step.run("before", count, "before")
    inputs = [
        BatchWorkflowInput(
            id="bi-child", payload={"n": n, "refuse": n == payload.get("refuse"), "nap": payload.get("nap")}
        )
        for n in range(payload["children"])
    ]
    results: list[BatchStepResult] = await ctx.step.batch_invoke_and_wait("all", inputs)
    await ctx.step.run("after", count, "after")
    return [result.model_dump() for result in results]


@workflow(id="bi-starter")
async def starter(ctx: WorkflowContext, payload: dict[str, Any]) -> list[str]:
    handles = await ctx.step.batch_invoke(
        "start", [BatchWorkflowInput(id="bi-child", payload={"n": n}) for n in range(3)]
    )
    await ctx.step.run("after", count, "after")
    return [handle.id for handle in handles]


@workflow(id="bi-too-many")
async def too_many(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    await ctx.step.batch_invoke_and_wait(
        "all", [BatchWorkflowInput(id="bi-child", payload={"n": n}) for n in range(1001)]
    )


class Review(BaseModel):
    reviewer: str
    score: int


@workflow(id="bi-reviewer")
async def reviewer(ctx: WorkflowContext, payload: dict[str, Any]) -> Review:
    return Review(reviewer=str(payload["who"]), score=len(str(payload["who"])))


@workflow(id="bi-reviews")
async def reviews(ctx: WorkflowContext, payload: dict[str, Any]) -> list[str]:
    inputs = [BatchWorkflowInput(id="bi-reviewer", payload={"who": who}) for who in ("ann", "bob")]
    results = await ctx.step.batch_invoke_and_wait("reviews", inputs)
    return [f"{r.result.reviewer}:{r.result.score}" for r in results]  # typed as the child's annotation


APP = App("batch-invoke", [child, parent, starter, too_many, reviewer, reviews])


def setup_function() -> None:
    calls.clear()


def test_ten_children_one_refusing_return_ten_results_in_order_each_child_run_once() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        stack.crash_after_step("before")  # the parent's first attempt dies: it replays from the journal
        run_id = stack.invoke("bi-parent", {"children": 10, "refuse": 3})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed", run
        results = run["result"]
        assert [r["success"] for r in results] == [n != 3 for n in range(10)]
        assert [r["result"] for r in results] == [None if n == 3 else n * 10 for n in range(10)]
        assert "child 3 refuses" in results[3]["error"] and results[3]["workflow_id"] == "bi-child"
        assert calls == {"before": 1, "after": 1, **{f"child{n}": 1 for n in range(10)}}, calls
        assert len(stack.runs("bi-child")) == 10  # each child started once
        # one durable wait: the parent's attempts are its start, the crash's retry and one resume
        assert run["attempts"] == 3, run["attempts"]
        (step,) = [s for s in run["steps"] if s["key"] == "all"]
        assert step["status"] == "completed" and len(step["result"]) == 10


def test_the_parent_waits_until_the_last_child_ended() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("bi-parent", {"children": 3, "nap": True})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "waiting" and run["waiting_for"] == {
            "step": "all",
            "kind": "child",
            "children": 3,
        }
        stack.advance(days=2)
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed" and [r["result"] for r in run["result"]] == [0, 10, 20], run
        assert calls["after"] == 1


def test_cancelling_the_parent_cancels_its_children() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("bi-parent", {"children": 3, "nap": True})
        stack.drain()
        assert stack.request("POST", f"/api/v1/runs/{run_id}/cancel").status == 200
        assert [r["status"] for r in stack.runs("bi-child")] == ["cancelled"] * 3
        stack.advance(days=2)
        stack.drain()
        assert stack.run(run_id)["status"] == "cancelled" and "after" not in calls


def test_batch_invoke_starts_children_once_and_returns_handles() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        stack.fail_step("after", times=3)  # the attempt fails after the children started: it replays
        run_id = stack.invoke("bi-starter", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed", run
        assert sorted(run["result"]) == sorted(r["run_id"] for r in stack.runs("bi-child"))
        assert len(run["result"]) == 3 and all(calls[f"child{n}"] == 1 for n in range(3))


def test_more_than_1000_children_is_a_clear_error() -> None:
    with local_stack(APP, max_attempts=5) as stack:
        run_id = stack.invoke("bi-too-many", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "failed" and "1001 children" in run["error"]["message"], run
        assert stack.runs("bi-child") == []


def test_batch_workflow_input_refuses_options_it_does_not_honour() -> None:
    with pytest.raises(ValueError, match="initial_state"):
        BatchWorkflowInput(id="bi-child", payload={}, initial_state={"a": 1})  # type: ignore[call-arg]


def test_each_childs_result_is_typed_as_its_workflows_return_annotation() -> None:
    with local_stack(APP) as stack:
        run_id = stack.invoke("bi-reviews", {})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "completed", run
        assert run["result"] == ["ann:3", "bob:3"]

"""``POST /api/v1/runs/{id}/rerun``: a new run (``rerun_of``) of the source's workflow and payload; with
``from_step`` the source's steps before that step replay as journaled and only that step and later ones
are called."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polos import WorkflowContext, WorkflowState, workflow
from polos.app import App
from polos.testing import Stack, local_stack

calls: list[str] = []
broken = {"step3": True}


def step(name: str, value: int) -> int:
    calls.append(name)
    if name == "step3" and broken["step3"]:
        raise RuntimeError("bug in step 3")
    return value + 1


class Tally(WorkflowState):
    total: int = 0


@workflow(id="four-steps", state_schema=Tally)
async def four_steps(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    value = int(payload["start"])
    for name in ("step1", "step2", "step3", "step4"):
        value = await ctx.step.run(name, step, name, value, max_retries=0)
        ctx.state.total += 1
    return value


@workflow(id="signup-like", trigger_on_event="user/signup")
async def signup_like(ctx: WorkflowContext, payload: Any) -> str:
    return str(await ctx.step.run("greet", step, "greet", 0))


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    broken["step3"] = True
    with local_stack(App("reruns", [four_steps, signup_like]), max_attempts=1) as opened:
        yield opened


def rerun(stack: Stack, run_id: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else None
    return stack.request("POST", f"/api/v1/runs/{run_id}/rerun", body, headers)


def failed_source(stack: Stack) -> str:
    answer = stack.request(
        "POST",
        "/api/v1/workflows/four-steps/run",
        {"payload": {"start": 10}, "initial_state": {"total": 100}},
    )
    source: str = answer.body["run_id"]
    stack.drain()
    assert stack.run(source)["status"] == "failed"
    assert calls == ["step1", "step2", "step3"]
    calls.clear()
    broken["step3"] = False  # the bug is fixed
    return source


def test_rerun_from_step_3_calls_only_step_3_and_later_ones(stack: Stack) -> None:
    source = failed_source(stack)
    answer = rerun(stack, source, {"from_step": "step3"})
    assert answer.status == 202, answer.body
    assert answer.body["rerun_of"] == source
    new = answer.body["run_id"]
    stack.drain()
    run = stack.run(new)
    assert run["status"] == "completed" and run["result"] == 14
    assert calls == ["step3", "step4"]  # steps 1 and 2 replayed as journaled
    assert run["rerun_of"] == source
    assert [s["key"] for s in run["steps"]] == ["step1", "step2", "step3", "step4"]
    assert run["state"] == {"total": 104}  # the initial state of the source, the replay's changes once each


def test_a_rerun_without_from_step_runs_everything_again_with_the_same_payload(stack: Stack) -> None:
    source = failed_source(stack)
    new = rerun(stack, source, {}).body["run_id"]
    stack.drain()
    assert stack.run(new)["result"] == 14
    assert calls == ["step1", "step2", "step3", "step4"]


def test_a_rerun_with_a_new_payload(stack: Stack) -> None:
    source = failed_source(stack)
    new = rerun(stack, source, {"payload": {"start": 0}}).body["run_id"]
    stack.drain()
    assert stack.run(new)["result"] == 4


def test_an_event_run_is_rerun_with_its_event(stack: Stack) -> None:
    stack.publish("user/signup", [{"data": {"user_id": "u1"}}])
    stack.drain()
    source = stack.runs("signup-like")[0]
    new = rerun(stack, source["run_id"], {}).body["run_id"]
    stack.drain()
    assert stack.run(new)["status"] == "completed" and calls == ["greet", "greet"]


def test_a_retried_rerun_with_its_key_makes_one_run(stack: Stack) -> None:
    source = failed_source(stack)
    first = rerun(stack, source, {"from_step": "step3"}, key="k1")
    again = rerun(stack, source, {"from_step": "step3"}, key="k1")
    assert first.body["run_id"] == again.body["run_id"]
    stack.drain()
    assert calls == ["step3", "step4"]
    other = rerun(stack, source, {"from_step": "step2"}, key="k1")
    assert other.status == 409 and other.body["error_type"] == "idempotency_conflict"


def test_bad_reruns_are_refused_naming_the_problem(stack: Stack) -> None:
    source = failed_source(stack)
    unknown = rerun(stack, source, {"from_step": "step9"})
    assert unknown.status == 404 and "step9" in unknown.body["error"] and "from_step" in unknown.body["error"]
    assert rerun(stack, "run_nope", {}).status == 404
    extra = rerun(stack, source, {"form_step": "step3"})
    assert extra.status == 400 and "form_step" in extra.body["error"]
    waiting = stack.request("POST", "/api/v1/workflows/four-steps/run", {"payload": {"start": 1}}).body[
        "run_id"
    ]
    assert rerun(stack, waiting, {}).status == 409  # queued: not finished

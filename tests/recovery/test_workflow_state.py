"""``@workflow(state_schema=Model)``: ``ctx.state`` starts from ``initial_state`` or the model's defaults, is
saved with the run's outcome and shown as ``state``; replays start again from the initial state, so a
mutation made before a journaled step is not applied twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from polos import WorkflowContext, WorkflowState, workflow
from polos.app import App
from polos.errors import WorkflowDefinitionError
from polos.testing import Stack, local_stack
from pydantic import BaseModel


class Counter(WorkflowState):
    counter: int = 0
    seen: list[str] = []


def noop() -> str:
    return "ok"


@workflow(id="counting", state_schema=Counter)
async def counting(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    ctx.state.counter += 1
    await ctx.step.run("first", noop)
    ctx.state.seen.append("first")
    if payload.get("wait"):
        await ctx.step.wait_for("nap", minutes=5)
        ctx.state.seen.append("woke")
    return int(ctx.state.counter)


@workflow(id="crashing", state_schema=Counter)
async def crashing(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    ctx.state.counter += 1
    await ctx.step.run("first", noop)
    await ctx.step.run("second", noop)
    return int(ctx.state.counter)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(App("state", [counting, crashing])) as opened:
        yield opened


def start(stack: Stack, workflow_id: str, payload: Any, initial_state: Any = None) -> str:
    body: dict[str, Any] = {"payload": payload}
    if initial_state is not None:
        body["initial_state"] = initial_state
    answer = stack.request("POST", f"/api/v1/workflows/{workflow_id}/run", body)
    assert answer.status == 202, answer.body
    run_id: str = answer.body["run_id"]
    return run_id


def test_initial_state_counter_5_ends_as_state_counter_6(stack: Stack) -> None:
    run_id = start(stack, "counting", {}, {"counter": 5})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == 6
    assert run["state"] == {"counter": 6, "seen": ["first"]}


def test_without_initial_state_the_model_defaults_start_it(stack: Stack) -> None:
    run_id = stack.invoke("counting", {}, run_timeout_seconds=60)  # polos.testing passes the options
    stack.drain()
    assert stack.run(run_id)["state"] == {"counter": 1, "seen": ["first"]}


def test_a_replay_after_a_wait_does_not_apply_a_mutation_twice(stack: Stack) -> None:
    run_id = start(stack, "counting", {"wait": True}, {"counter": 5})
    stack.drain()
    waiting = stack.run(run_id)
    assert waiting["status"] == "waiting"
    assert waiting["state"] == {"counter": 6, "seen": ["first"]}  # saved with the waiting outcome
    stack.advance(minutes=5)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == 6
    assert run["state"] == {"counter": 6, "seen": ["first", "woke"]}


def test_a_replay_after_a_crash_does_not_apply_a_mutation_twice(stack: Stack) -> None:
    stack.crash_after_step("first")
    run_id = start(stack, "crashing", {}, {"counter": 5})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["attempts"] == 2
    assert run["state"]["counter"] == 6 and run["result"] == 6


def test_an_initial_state_that_does_not_fit_the_schema_fails_the_run_naming_the_field(stack: Stack) -> None:
    run_id = start(stack, "counting", {}, {"counter": "many"})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "failed" and run["attempts"] == 1
    assert run["error"]["type"] == "StateError" and "initial_state.counter" in run["error"]["message"]


def test_initial_state_must_be_an_object(stack: Stack) -> None:
    answer = stack.request("POST", "/api/v1/workflows/counting/run", {"payload": {}, "initial_state": [1]})
    assert answer.status == 400 and "initial_state" in answer.body["error"]


def test_a_state_schema_that_is_not_a_model_or_lacks_defaults_is_a_decoration_error() -> None:
    class NoDefault(BaseModel):
        needed: int

    with pytest.raises(WorkflowDefinitionError, match="state_schema"):
        workflow(id="bad-schema", state_schema=dict)(counting.fn)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="needs a default"):
        workflow(id="bad-schema", state_schema=NoDefault)(counting.fn)


def test_invoke_checks_initial_state_against_the_schema_before_sending() -> None:
    from polos.state import StateError

    with pytest.raises(StateError, match=r"initial_state\.counter"):
        asyncio.run(counting.invoke(None, {}, initial_state={"counter": "many"}))  # type: ignore[arg-type]


@workflow(id="stateless")
async def stateless(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return "ok"


@workflow(id="starts-a-child")
async def starts_a_child(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    return await ctx.step.invoke_and_wait("kid", "stateless", {}, initial_state={"counter": 1})


def test_initial_state_for_a_workflow_without_state_schema_is_refused_never_ignored() -> None:
    with local_stack(App("stateless", [stateless, starts_a_child, counting])) as stack:
        body = {"payload": {}, "initial_state": {"counter": 1}}
        answer = stack.request("POST", "/api/v1/workflows/stateless/run", body)
        assert answer.status == 400 and "initial_state" in answer.body["error"]
        assert "no state_schema" in answer.body["error"]
        parent = stack.invoke("starts-a-child", {})  # named by id: the child's worker refuses it
        stack.drain()
        child = stack.run(stack.run(parent)["children"][0])
        assert child["status"] == "failed" and child["error"]["type"] == "StateError"
        assert "StateError" in stack.run(parent)["error"]["message"]  # raised in the parent

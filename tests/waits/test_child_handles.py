"""``ctx.step.invoke`` returns the handle ``Workflow.invoke`` returns (DESIGN §1d), equal on every replay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from polos import ExecutionHandle, PolosClient, WorkflowContext, WorkflowHandle, workflow
from polos.app import App
from polos.testing import Stack, local_stack

seen: list[Any] = []


@workflow(id="handle-child")
async def handle_child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    return int(payload["n"]) + 1


@workflow(id="handle-parent")
async def handle_parent(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    handle = await ctx.step.invoke("kid", handle_child, {"n": payload["n"]})
    seen.append(handle)
    await ctx.step.wait_for("nap", hours=1)  # the next attempt replays the invoke step
    return {"run_id": handle.run_id, "id": handle.id, "workflow_id": handle.workflow_id}


APP = App("child-handles", [handle_child, handle_parent])


class StackClient(PolosClient):
    """A ``PolosClient`` whose requests go to the in-process stack's API handler."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(base_url="http://stack.invalid", api_key=stack.api_key)
        self._stack = stack

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        answer = self._stack.request(method, path, body, headers)
        assert answer.status < 400, answer.body
        return answer.body


@pytest.fixture
def stack() -> Iterator[Stack]:
    seen.clear()
    with local_stack(APP) as opened:
        yield opened


def test_step_invoke_returns_the_execution_handle_equal_on_replay(stack: Stack) -> None:
    parent_id = stack.invoke("handle-parent", {"n": 41})
    stack.drain()
    stack.advance(hours=2)
    stack.drain()
    parent = stack.run(parent_id)
    assert parent["status"] == "completed", parent
    first, replayed = seen
    assert type(first) is ExecutionHandle and WorkflowHandle is ExecutionHandle
    assert replayed == first  # the replay rebuilt an equal handle from the journal
    assert first.id == first.run_id == parent["result"]["run_id"] == parent["result"]["id"]
    assert first.workflow_id == "handle-child"
    assert first.parent_execution_id == parent_id and first.step_key == "kid"
    assert first.created_at is not None

    client = StackClient(stack)
    official = asyncio.run(first.get(client))
    assert official["id"] == first.id and official["workflow_id"] == "handle-child"
    assert asyncio.run(first.result(client, timeout=5)) == 42


def test_workflow_invoke_returns_the_same_handle_type(stack: Stack) -> None:
    client = StackClient(stack)
    handle = asyncio.run(handle_child.invoke(client, {"n": 1}))
    assert type(handle) is ExecutionHandle and handle.id == handle.run_id
    assert handle.workflow_id == "handle-child" and handle.created_at is not None
    stack.drain()
    assert asyncio.run(handle.result(timeout=5)) == 2  # the client it was started with
    assert asyncio.run(handle.get(client))["status"] == "completed"

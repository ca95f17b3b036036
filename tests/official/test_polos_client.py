"""``from polos import Polos``: the official SDK's client, typed results, handles, resume (issue 25)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.stack_polos import StackPolos
from polos import ExecutionHandle, Polos, PolosClient, WorkflowContext, workflow
from polos.app import App
from polos.testing import Stack, local_stack
from pydantic import BaseModel


class Line(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    order_id: str
    lines: list[Line]


class Summary(BaseModel):
    order_id: str
    total_items: int
    first: Line


@workflow(id="summarise")
async def summarise(ctx: WorkflowContext, payload: Order) -> Summary:
    total = await ctx.step.run("count", lambda: sum(line.quantity for line in payload.lines))
    return Summary(order_id=payload.order_id, total_items=total, first=payload.lines[0])


@workflow(id="untyped")
async def untyped(ctx: WorkflowContext, payload: dict) -> Any:  # type: ignore[type-arg]
    return {"echo": payload}


@workflow(id="approve")
async def approve(ctx: WorkflowContext, payload: dict) -> dict:  # type: ignore[type-arg]
    decision = await ctx.step.suspend("decision", data={"ask": payload["ask"]})
    return {"approved": decision["approved"]}


@workflow(id="parent")
async def parent(ctx: WorkflowContext, payload: Order) -> dict:  # type: ignore[type-arg]
    child = await ctx.step.invoke_and_wait("child", summarise, payload)
    return {"typed": isinstance(child, Summary), "first_sku": child.first.sku, "total": child.total_items}


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(App("official", [summarise, untyped, approve, parent])) as opened:
        yield opened


def test_polos_reads_the_environment_and_is_an_async_context_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLOS_API_URL", "http://localhost:9999/")
    monkeypatch.setenv("POLOS_API_KEY", "pk_test")

    async def open_it() -> Polos:
        # The official worker's arguments are accepted and mean nothing here.
        async with Polos(project_id="p", deployment_id="d", port=8000, log_file="polos.log") as polos:
            return polos

    polos = asyncio.run(open_it())
    assert isinstance(polos, PolosClient)
    assert (polos.api_url, polos.base_url) == ("http://localhost:9999", "http://localhost:9999")
    monkeypatch.delenv("POLOS_API_KEY")
    with pytest.raises(ValueError, match="POLOS_API_KEY"):
        Polos()


def test_workflow_run_returns_the_result_typed_by_the_return_annotation(stack: Stack) -> None:
    polos = StackPolos(stack)
    order = Order(order_id="o-1", lines=[Line(sku="a", quantity=2), Line(sku="b", quantity=3)])
    result = asyncio.run(summarise.run(polos, order))
    assert isinstance(result, Summary) and isinstance(result.first, Line)
    assert (result.order_id, result.total_items, result.first.sku) == ("o-1", 5, "a")
    assert asyncio.run(untyped.run(polos, {"x": 1})) == {"echo": {"x": 1}}  # unannotated: as it is


def test_invoke_answers_an_execution_handle_whose_get_is_the_official_execution(stack: Stack) -> None:
    polos = StackPolos(stack)
    handle = asyncio.run(summarise.invoke(polos, Order(order_id="o-2", lines=[Line(sku="c", quantity=1)])))
    assert isinstance(handle, ExecutionHandle)
    assert (handle.root_workflow_id, handle.root_execution_id) == ("summarise", handle.id)
    stack.drain()
    execution = asyncio.run(handle.get(polos))
    assert execution["id"] == handle.id and execution["status"] == "completed"
    assert execution["result"]["total_items"] == 1
    assert set(execution) >= {"id", "workflow_id", "status", "payload", "result", "error", "created_at"}
    assert asyncio.run(polos.get_execution(handle.id)) == execution


def test_polos_invoke_sends_the_official_run_options_and_only_those_given(stack: Stack) -> None:
    polos = StackPolos(stack)
    handle = asyncio.run(
        polos.invoke(
            workflow_id="untyped", payload={"x": 2}, concurrency_key="tenant-1", run_timeout_seconds=60
        )
    )
    method, path, body = polos.sent[-1]
    assert (method, path) == ("POST", "/api/v1/workflows/untyped/run")
    assert body == {"payload": {"x": 2}, "concurrency_key": "tenant-1", "run_timeout_seconds": 60}
    assert handle.workflow_id == "untyped"
    # Workflow.invoke / run pass the same options, those given only.
    asyncio.run(untyped.invoke(polos, {"x": 3}, run_timeout_seconds=30, queue_name="lane"))
    assert polos.sent[-1][2] == {"payload": {"x": 3}, "run_timeout_seconds": 30, "queue_name": "lane"}


def test_polos_resume_with_the_official_keywords_resumes_the_suspended_step(stack: Stack) -> None:
    polos = StackPolos(stack)
    handle = asyncio.run(approve.invoke(polos, {"ask": "laptop"}))
    stack.drain()
    assert stack.run(handle.id)["status"] == "waiting"
    asyncio.run(
        polos.resume(
            suspend_workflow_id=handle.root_workflow_id,
            suspend_execution_id=handle.id,
            suspend_step_key="decision",
            data={"approved": True},
        )
    )
    stack.drain()
    run = stack.run(handle.id)
    assert (run["status"], run["result"]) == ("completed", {"approved": True})


def test_invoke_and_wait_types_the_childs_result_by_its_return_annotation(stack: Stack) -> None:
    order = Order(order_id="o-3", lines=[Line(sku="d", quantity=4)])
    result = asyncio.run(parent.run(StackPolos(stack), order))
    assert result == {"typed": True, "first_sku": "d", "total": 4}

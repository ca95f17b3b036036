"""Cancel, suspend/resume, wait_for_event and child runs: the waits something else completes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.waiters import published_before_the_waiter_registers
from polos import WorkflowContext, workflow
from polos.app import App
from polos.errors import StepExecutionError
from polos.runtime import steps
from polos.testing import Stack, local_stack

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="approval")
async def approval(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.step.run("ask", count, "ask")
    decision = await ctx.step.suspend("approve", {"amount": payload.get("amount")})
    await ctx.step.run("after", count, "after")
    return decision


@workflow(id="approval-read-as-event")
async def approval_read_as_event(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Reads the resume as the official SDK's examples read its resume event: ``.get("data", {})``."""
    decision = await ctx.step.suspend("approve", {})
    return {"got": decision.get("data", {}), "indexed": decision["data"], "plain": decision}


@workflow(id="order")
async def order(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        paid = await ctx.step.wait_for_event(
            "paid", "payment/succeeded", timeout=payload.get("timeout"), match={"order_id": payload["id"]}
        )
    except StepExecutionError as exc:
        return {"timed_out": str(exc)}
    return {"amount": paid.data["amount"], "sequence_id": paid.sequence_id}


@workflow(id="child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    if payload.get("wait"):
        await ctx.step.wait_for("nap", days=1)
    if payload.get("fail"):
        raise ValueError("child says no")
    return int(payload["n"]) * 2


@workflow(id="parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    try:
        doubled = await ctx.step.invoke_and_wait("kid", child, payload)
    except StepExecutionError as exc:
        return {"child_failed": str(exc)}
    await ctx.step.run("after", count, "after")
    return doubled


@workflow(id="stepper")
async def stepper(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("one", cancel_self, payload["stack_run"])
    await ctx.step.run("two", count, "two")
    return "done"


_stack: list[Stack] = []


def cancel_self(run_id_hint: str) -> str:
    """Step one asks for the run's own cancel while it runs (the run is ``running`` now)."""
    stack = _stack[0]
    running = [run for run in stack.runs("stepper") if run["status"] == "running"]
    answer = stack.request("POST", f"/api/v1/runs/{running[0]['run_id']}/cancel")
    assert answer.status == 200 and answer.body["status"] == "running"
    return count("one")


APP = App("control", [approval, approval_read_as_event, order, child, parent, stepper])


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(APP) as opened:
        _stack[:] = [opened]
        yield opened
    _stack.clear()


def test_a_suspended_run_resumes_with_the_data_and_a_second_resume_is_409(stack: Stack) -> None:
    run_id = stack.invoke("approval", {"amount": 5})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "waiting" and run["waiting_for"]["kind"] == "resume"
    first = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": {"ok": 1}})
    assert first.status == 200, first.body
    second = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": {}})
    assert second.status == 409 and "approve" in second.body["error"]
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"ok": 1}
    assert calls == {"ask": 1, "after": 1}


def test_the_resume_data_reads_as_the_official_sdks_resume_event_too(stack: Stack) -> None:
    plain, own = stack.invoke("approval-read-as-event", {}), stack.invoke("approval-read-as-event", {})
    stack.drain()
    for run_id, data in ((plain, {"ok": 1}), (own, {"data": 7})):
        answer = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": data})
        assert answer.status == 200, answer.body
    stack.drain()
    assert stack.run(plain)["result"] == {"got": {"ok": 1}, "indexed": {"ok": 1}, "plain": {"ok": 1}}
    assert stack.run(own)["result"] == {"got": 7, "indexed": 7, "plain": {"data": 7}}  # its own key wins


def test_resume_bodies_and_unknown_steps_are_refused_naming_the_field(stack: Stack) -> None:
    run_id = stack.invoke("approval", {})
    stack.drain()
    missing = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"data": {}})
    assert missing.status == 400 and "step_key" in missing.body["error"]
    bad = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "approve", "data": [1]})
    assert bad.status == 400 and "data" in bad.body["error"]
    unknown = stack.request("POST", f"/api/v1/runs/{run_id}/resume", {"step_key": "ask"})
    assert unknown.status == 404 and "ask" in unknown.body["error"]
    nobody = stack.request("POST", "/api/v1/runs/run_nope/resume", {"step_key": "approve"})
    assert nobody.status == 404


def test_the_official_clients_resume_event_resumes_the_step(stack: Stack) -> None:
    run_id = stack.invoke("approval", {})
    stack.drain()
    stack.publish(f"workflow/approval/{run_id}", [{"event_type": "resume_other", "data": {"no": 1}}])
    stack.publish(f"workflow/approval/{run_id}", [{"event_type": "resume_approve", "data": {"yes": 2}}])
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"yes": 2}


def test_wait_for_event_matches_one_event_on_its_fields(stack: Stack) -> None:
    first = stack.invoke("order", {"id": "A"})
    second = stack.invoke("order", {"id": "B"})
    stack.drain()
    assert stack.run(first)["waiting_for"] == {"step": "paid", "kind": "event", "topic": "payment/succeeded"}
    stack.publish(
        "payment/succeeded",
        [
            {"data": {"order_id": "B", "amount": 1}},
            {"data": {"order_id": "A", "amount": 2}},
            {"data": {"order_id": "A", "amount": 3}},
        ],
    )
    stack.drain()
    assert stack.run(first)["result"] == {"amount": 2, "sequence_id": 2}  # the first match only
    assert stack.run(second)["result"] == {"amount": 1, "sequence_id": 1}


def test_an_event_published_before_the_waiter_registered_is_found_by_the_look_back(stack: Stack) -> None:
    with published_before_the_waiter_registers(stack, "payment/succeeded", {"order_id": "R", "amount": 9}):
        run_id = stack.invoke("order", {"id": "R"})
        stack.drain()
    assert stack.run(run_id)["result"] == {"amount": 9, "sequence_id": 1}


def test_a_wait_for_event_times_out_with_a_step_error(stack: Stack) -> None:
    run_id = stack.invoke("order", {"id": "T", "timeout": 3600})
    stack.drain()
    stack.advance(hours=1, seconds=1)
    stack.drain()
    result = stack.run(run_id)["result"]
    assert "timed_out" in result and "WaitTimeoutError" in result["timed_out"]
    stack.publish("payment/succeeded", [{"data": {"order_id": "T", "amount": 1}}])  # too late: nothing
    stack.drain()
    assert stack.run(run_id)["status"] == "completed"


def test_invoke_and_wait_resumes_the_parent_with_the_childs_result(stack: Stack) -> None:
    run_id = stack.invoke("parent", {"n": 21})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == 42
    (kid,) = run["children"]
    assert stack.run(kid)["parent_run_id"] == run_id


def test_a_failed_child_raises_a_step_error_in_the_parent(stack: Stack) -> None:
    run_id = stack.invoke("parent", {"n": 1, "fail": True})
    stack.drain()
    result = stack.run(run_id)["result"]
    assert "child_failed" in result and "child says no" in result["child_failed"]


def test_cancelling_a_waiting_parent_cancels_its_child_and_cancelling_it_again_is_200(stack: Stack) -> None:
    run_id = stack.invoke("parent", {"n": 1, "wait": True})
    stack.drain()
    (kid,) = stack.run(run_id)["children"]
    assert stack.run(kid)["status"] == "waiting"
    answer = stack.request("POST", f"/api/v1/executions/{run_id}/cancel")
    assert answer.status == 200 and answer.body["status"] == "cancelled"
    assert stack.run(kid)["status"] == "cancelled"
    stack.advance(days=2)
    stack.drain()
    assert stack.run(run_id)["status"] == "cancelled" and "after" not in calls
    again = stack.request("POST", f"/api/v1/runs/{run_id}/cancel")
    assert again.status == 200 and again.body["status"] == "cancelled"
    assert {r["run_id"] for r in stack.runs(status="cancelled")} == {run_id, kid}


def test_a_running_run_is_cancelled_at_its_next_step_boundary(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "CANCEL_CHECK_SECONDS", 0.0)
    run_id = stack.invoke("stepper", {"stack_run": ""})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "cancelled"
    assert calls == {"one": 1}  # step two was never called

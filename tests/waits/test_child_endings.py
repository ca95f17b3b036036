"""Every way a child run ends reaches the parent waiting in ``invoke_and_wait`` (no timeout), exactly once:
completed, failed by its code, failed by its last receive (``DeliveryExhausted``: every delivery died),
failed by a timeout (its own wait timed out), and cancelled. A redelivered message of the child (or its last
receive settled again) changes nothing: the parent resumed once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polos import NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.errors import StepExecutionError
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import dead_letters
from polos.runtime.journal import Journal
from polos.testing import Stack, local_stack

from infra.local.testing import SimulatedCrash

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


def die() -> None:
    """Every call kills the worker (a Lambda timeout, out of memory): no attempt ever ends."""
    count("die")
    raise SimulatedCrash("the child's worker died")


@workflow(id="ce-kid")
async def kid(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    ending = payload["ending"]
    if ending == "failed":
        raise NonRetryableError("the kid gives up")
    if ending == "exhausted":
        await ctx.step.run("die", die)
    if ending == "timeout":
        await ctx.step.wait_for_event("never", "ce/never", timeout=60)
    if ending == "cancelled":
        await ctx.step.suspend("hold")
    return 7


@workflow(id="ce-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        outcome: dict[str, Any] = {"result": await ctx.step.invoke_and_wait("kid", kid, payload)}
    except StepExecutionError as exc:
        outcome = {"error": str(exc)}
    await ctx.step.run("after", count, "after")
    return outcome


APP = App("child-endings", [kid, parent])
ENDINGS = {
    "completed": {"result": 7},
    "failed": "the kid gives up",
    "exhausted": "DeliveryExhausted",
    "timeout": "WaitTimeoutError",
    "cancelled": "RunCancelledError",
}


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(APP) as opened:
        yield opened


def end_the_child(stack: Stack, ending: str, run_id: str) -> str:
    """Run the parent and its child until the child ended; the child's run id."""
    stack.drain()
    (child,) = stack.run(run_id)["children"]
    if ending == "timeout":
        stack.advance(seconds=61)
    if ending == "cancelled":
        assert stack.request("POST", f"/api/v1/runs/{child}/cancel").status == 200
    stack.drain()
    return str(child)


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_end_of_a_child_resumes_its_waiting_parent_once(stack: Stack, ending: str) -> None:
    run_id = stack.invoke("ce-parent", {"ending": ending})
    child = end_the_child(stack, ending, run_id)
    expected = "completed" if ending == "completed" else "cancelled" if ending == "cancelled" else "failed"
    assert stack.run(child)["status"] == expected, stack.run(child)

    run = stack.run(run_id)
    assert run["status"] == "completed", run
    wanted = ENDINGS[ending]
    assert run["result"] == wanted if isinstance(wanted, dict) else wanted in run["result"]["error"], run
    assert calls["after"] == 1

    # Redelivered: the child's message comes back (and its last receive is settled once more).
    message = WorkflowMessage("ce-kid", "invoke", run_id=child)
    deliver([message])
    dead_letters.settle_exhausted(message, False, Journal())
    stack.drain()
    assert stack.run(run_id) == run  # the parent resumed once: nothing changed
    assert calls["after"] == 1

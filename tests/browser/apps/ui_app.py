"""The dashboard tests' app, served with ``polos dev --app tests/browser/apps/ui_app.py``."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from polos import EventPayload, WorkflowContext, workflow

_calls: Counter[str] = Counter()


def _work(seconds: float, label: str) -> dict[str, Any]:
    time.sleep(seconds)
    return {"done": label}


def _charge(event_id: str, amount: int) -> dict[str, Any]:
    """Fails its first call for each event (a flaky card network), so the step shows 2 attempts."""
    _calls[event_id] += 1
    time.sleep(0.2)
    if _calls[event_id] == 1:
        raise ConnectionError("card network timed out")
    return {"charged": amount}


@workflow(id="ui-orders", trigger_on_event="ui/orders")
async def orders(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.run("reserve-stock", _work, 0.15, "reserved")
    await ctx.step.run("charge-card", _charge, payload.id, payload.data["amount"], base_delay=0.2)
    receipt = await ctx.step.uuid("receipt-id")
    await ctx.step.run("send-receipt", _work, 0.1, "sent")
    return {"order": payload.data["order"], "receipt": receipt}


@workflow(id="ui-echo", trigger_on_event="ui/echo")
async def echo(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    """Echoes its event's data; fails with the data's ``boom`` as the error message when present."""

    def repeat() -> dict[str, Any]:
        if "boom" in payload.data:
            raise ValueError(payload.data["boom"])
        return payload.data

    return dict(await ctx.step.run("echo", repeat, max_retries=0))


@workflow(id="ui-slow", trigger_on_event="ui/slow")
async def slow(ctx: WorkflowContext, payload: EventPayload) -> str:
    await ctx.step.run("nap", _work, float(payload.data["seconds"]), "rested")
    return "rested"


@workflow(id="ui-wait", trigger_on_event="ui/wait")
async def wait_then_work(ctx: WorkflowContext, payload: EventPayload) -> str:
    await ctx.step.wait_for("nap", days=3)
    await ctx.step.run("after-nap", _work, 0.0, "after")
    return "woke"


@workflow(id="ui-approval", trigger_on_event="ui/approval")
async def approval(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    decision = await ctx.step.suspend("approve", data={"amount": 4200}, timeout=7 * 24 * 3600)
    return {"approved": bool(decision.get("approved"))}


def _flaky_charge(event_id: str) -> str:
    """Fails its first call for each event: with one execution allowed the run is dead-lettered, and its
    redrive completes it."""
    _calls[f"flaky-{event_id}"] += 1
    if _calls[f"flaky-{event_id}"] == 1:
        raise ConnectionError("card network timed out")
    return "charged"


@workflow(id="ui-flaky", trigger_on_event="ui/flaky")
async def flaky(ctx: WorkflowContext, payload: EventPayload) -> str:
    return _flaky_charge(payload.id)  # outside a step: the execution fails, so SQS's attempts count


@workflow(id="ui-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoked only (by ui-parent, or from the dashboard's run form)."""
    await ctx.step.run("work", _work, 0.05, "child")
    return {"echo": payload}


@workflow(id="ui-parent", trigger_on_event="ui/parent")
async def parent(ctx: WorkflowContext, payload: EventPayload) -> Any:
    return await ctx.step.invoke_and_wait("child", child, {"from": payload.id})


@workflow(id="ui-await", trigger_on_event="ui/await")
async def await_approval(ctx: WorkflowContext, payload: EventPayload) -> str:
    approved = await ctx.step.wait_for_event("approved", "ui/approved", timeout=3600)
    return str(approved.id)


@workflow(id="ui-nightly", schedule="0 3 * * *")
async def nightly(ctx: WorkflowContext) -> None:
    """Scheduled (never fires during the tests): the Workflows page's schedule trigger."""

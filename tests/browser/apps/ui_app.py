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
    await ctx.step.wait_for("nap", hours=1)
    await ctx.step.run("after-nap", _work, 0.0, "after")
    return "woke"


@workflow(id="ui-approval", trigger_on_event="ui/approval")
async def approval(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    decision = await ctx.step.suspend("approve")
    return {"approved": bool(decision.get("approved"))}

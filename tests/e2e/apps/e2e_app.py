"""The end-to-end tests' app, served with ``polos dev --app tests/e2e/apps/e2e_app.py``."""

from __future__ import annotations

import time
from typing import Any

from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow


def _stamp(label: str) -> dict[str, Any]:
    return {"label": label, "at": time.time()}


@workflow(id="e2e-batch", trigger_on_event="e2e/batch", batch_size=3, batch_timeout_seconds=2)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> dict[str, Any]:
    await ctx.step.run("record", _stamp, "batch")
    return {"size": len(payload.events)}


@workflow(id="e2e-flaky", trigger_on_event="e2e/flaky")
async def flaky(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    """Its first attempt fails after journaling ``first``; the retry must not call ``first`` again."""
    first = await ctx.step.run("first", _stamp, "first")
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails on purpose")
    await ctx.step.run("second", _stamp, "second")
    return {"first_at": first["at"], "attempt": ctx.attempt}


@workflow(id="e2e-poison", trigger_on_event="e2e/poison")
async def poison(ctx: WorkflowContext, payload: EventPayload) -> None:
    raise ValueError(f"poison event {payload.id} always fails")


@workflow(id="e2e-count", trigger_on_event="e2e/load")
async def count(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.run("seen", _stamp, payload.id)
    return {"n": payload.data["n"]}


@workflow(id="e2e-slow", trigger_on_event="e2e/slow")
async def slow(ctx: WorkflowContext, payload: EventPayload) -> str:
    await ctx.step.run("nap", time.sleep, float(payload.data["seconds"]))
    return "rested"

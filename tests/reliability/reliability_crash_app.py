"""The crash matrix's app: one topic, a single-event subscriber that publishes an event of its own, a batch
subscriber, and the subscriber of the published event. Every step function counts its calls in
``EFFECTS`` (this process runs the worker), keyed by workflow, run, step key and the events it handled,
and when each call started in ``CALLS``.
"""

from __future__ import annotations

import time
from collections import Counter
from threading import Lock
from typing import Any

from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App

TOPIC = "crash/orders"
NOTIFIED_TOPIC = "crash/notified"
Effect = tuple[str, str, str, tuple[str, ...]]
EFFECTS: Counter[Effect] = Counter()
CALLS: list[tuple[Effect, float]] = []  # and time.perf_counter() at the call
_LOCK = Lock()


def effect(workflow_id: str, run_id: str, key: str, event_ids: list[str]) -> dict[str, Any]:
    called = (workflow_id, run_id, key, tuple(sorted(event_ids)))
    with _LOCK:
        EFFECTS[called] += 1
        CALLS.append((called, time.perf_counter()))
    return {"key": key, "events": len(event_ids)}


@workflow(id="crash-single", trigger_on_event=TOPIC)
async def crash_single(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.run("charge", effect, ctx.workflow_id, ctx.run_id, "charge", [payload.id])
    notified = await ctx.step.publish_event("notify", NOTIFIED_TOPIC, {"order": payload.id})
    await ctx.step.run("ship", effect, ctx.workflow_id, ctx.run_id, "ship", [payload.id])
    return {"notified": notified.id}


@workflow(id="crash-batch", trigger_on_event=TOPIC, batch_size=10)
async def crash_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> dict[str, Any]:
    ids = [event.id for event in payload.events]
    await ctx.step.run("load", effect, ctx.workflow_id, ctx.run_id, "load", ids)
    await ctx.step.run("report", effect, ctx.workflow_id, ctx.run_id, "report", ids)
    return {"events": len(ids)}


@workflow(id="crash-notified", trigger_on_event=NOTIFIED_TOPIC)
async def crash_notified(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.run("mail", effect, ctx.workflow_id, ctx.run_id, "mail", [str(payload.data["order"])])
    return {"mailed": payload.data["order"]}


def app() -> App:
    return App(__name__, [crash_single, crash_batch, crash_notified])

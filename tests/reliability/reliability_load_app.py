"""The load test's app: three workflows on one topic, one of them batched. Every step function records
the run and the events it handled in ``EFFECTS`` (this process runs the worker)."""

from __future__ import annotations

from collections import Counter
from threading import Lock

from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App

TOPIC = "load/orders"
SINGLE = ("load-audit", "load-email")
BATCHED = "load-warehouse"
EFFECTS: Counter[tuple[str, str, tuple[str, ...]]] = Counter()
_LOCK = Lock()


def effect(workflow_id: str, run_id: str, event_ids: list[str]) -> int:
    with _LOCK:
        EFFECTS[(workflow_id, run_id, tuple(event_ids))] += 1
    return len(event_ids)


@workflow(id="load-audit", trigger_on_event=TOPIC)
async def load_audit(ctx: WorkflowContext, payload: EventPayload) -> int:
    return int(await ctx.step.run("audit", effect, ctx.workflow_id, ctx.run_id, [payload.id]))


@workflow(id="load-email", trigger_on_event=TOPIC)
async def load_email(ctx: WorkflowContext, payload: EventPayload) -> int:
    return int(await ctx.step.run("email", effect, ctx.workflow_id, ctx.run_id, [payload.id]))


@workflow(id="load-warehouse", trigger_on_event=TOPIC, batch_size=10, batch_timeout_seconds=1)
async def load_warehouse(ctx: WorkflowContext, payload: BatchEventPayload) -> int:
    ids = [event.id for event in payload.events]
    return int(await ctx.step.run("reserve", effect, ctx.workflow_id, ctx.run_id, ids))


def app() -> App:
    return App(__name__, [load_audit, load_email, load_warehouse])


def delivered() -> int:
    """Deliveries done so far: events handled by each workflow's step functions."""
    with _LOCK:
        return sum(len(ids) * count for (_, _, ids), count in EFFECTS.items())

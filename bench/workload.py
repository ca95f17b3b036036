"""The benchmark app: one topic per workload shape, each with 1 or 3 subscribed workflows.

A shape is (subscribers, steps per run, single-event or batch of 10). Every step calls :func:`effect`, a
stand-in for the user's side effect (small input, small JSON result), so the three systems compared do
exactly the same work per event. ``POLOS_APP=bench.workload`` makes the worker load this app.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any

from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.definition import Workflow

APP_TARGET = "bench.workload"  # what the worker imports (POLOS_APP)
BATCH_SIZE = 10
SUBSCRIBERS = (1, 3)
STEPS = (1, 5)
MODES = ("single", "batch")


@dataclass(frozen=True)
class Shape:
    """What each subscriber of one topic does with an event."""

    subscribers: int
    steps: int
    batch: bool

    @property
    def topic(self) -> str:
        return f"bench/s{self.subscribers}-k{self.steps}-{'batch' if self.batch else 'single'}"

    def workflow_ids(self) -> list[str]:
        return [f"{self.topic.replace('/', '-')}-w{i}" for i in range(self.subscribers)]


def effect(step: int, event_ids: list[str]) -> dict[str, Any]:
    """One step's side effect: what it did, small enough to journal in one write unit."""
    return {"step": step, "events": len(event_ids), "first": event_ids[0]}


def make_workflow(
    workflow_id: str,
    shape: Shape,
    topic: str | None = None,
    module: str = __name__,
    batch_size: int = BATCH_SIZE,
    batch_timeout_seconds: int | None = None,
) -> Workflow:
    """A workflow of ``shape`` on ``topic`` (default: the shape's), registered as defined in ``module``
    (an app is the workflows its module defines); batch workflows take ``batch_size`` events."""
    topic = topic or shape.topic
    if shape.batch:

        async def run_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> dict[str, Any]:
            ids = [event.id for event in payload.events]
            for step in range(shape.steps):
                await ctx.step.run(f"step{step}", effect, step, ids)
            return {"events": len(ids)}

        run_batch.__module__ = module
        return workflow(
            id=workflow_id,
            trigger_on_event=topic,
            batch_size=batch_size,
            batch_timeout_seconds=batch_timeout_seconds,
        )(run_batch)

    async def run_single(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
        for step in range(shape.steps):
            await ctx.step.run(f"step{step}", effect, step, [payload.id])
        return {"events": 1}

    run_single.__module__ = module
    return workflow(id=workflow_id, trigger_on_event=topic)(run_single)


SHAPES: tuple[Shape, ...] = tuple(
    Shape(subscribers, steps, mode == "batch")
    for subscribers in SUBSCRIBERS
    for steps in STEPS
    for mode in MODES
)
SHAPE_OF: dict[str, Shape] = {wf_id: shape for shape in SHAPES for wf_id in shape.workflow_ids()}
WORKFLOWS: list[Workflow] = [make_workflow(wf_id, shape) for wf_id, shape in SHAPE_OF.items()]


def app() -> App:
    return App(APP_TARGET, WORKFLOWS)


EVENT_DATA_BYTES = 1024
# What an event's data is. "base64" (the headline's): an order whose ``note`` fills it up to
# EVENT_DATA_BYTES with seeded random base64 tokens, which compress worse than common JSON text (ids,
# names, prose), so a store that compresses its items is not flattered (zlib: ~77% of its size). "ascii":
# the worst case of text, EVENT_DATA_BYTES of nothing but seeded random printable ASCII without JSON escapes
# (zlib: ~86%).
DATA_KINDS = ("base64", "ascii")
_BASE64 = string.ascii_letters + string.digits + "+/"
_PRINTABLE = "".join(c for c in string.printable[:95] if c not in '"\\')  # JSON keeps them as they are


def sample_event(n: int, kind: str = "base64", data_bytes: int = EVENT_DATA_BYTES) -> dict[str, Any]:
    """The event every scenario publishes: ``data`` is exactly ``data_bytes`` of compact JSON, of ``kind``
    (:data:`DATA_KINDS`), its random text drawn from ``random.Random(n)``."""
    data: dict[str, Any] = {"note": ""}
    if kind == "base64":
        data = {
            "order_id": f"ord-{n:08d}",
            "customer": {"id": f"cus-{n % 997:05d}", "email": f"customer{n % 997}@example.com"},
            "items": [
                {"sku": "SKU-1042", "qty": 2, "price_cents": 1299},
                {"sku": "SKU-2210", "qty": 1, "price_cents": 4550},
            ],
            "total_cents": 7148,
            "currency": "EUR",
            "note": "",
        }
    alphabet = {"base64": _BASE64, "ascii": _PRINTABLE}[kind]
    rng = random.Random(n)
    size = data_bytes - len(json.dumps(data, separators=(",", ":")))
    data["note"] = "".join(rng.choice(alphabet) for _ in range(size))
    return {"event_type": "order_created", "data": data}

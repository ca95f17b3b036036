"""The slot crash matrix's app: one single-event workflow on a queue of limit 1, in ``strict_order`` (so the
matrix crosses the start-order registry's requests too; without it a run makes the same requests but those).
Its step function records when each call started and ended (``SPANS``), so overlapping runs show."""

from __future__ import annotations

import time
from threading import Lock

from polos import EventPayload, Queue, WorkflowContext, workflow
from polos.app import App

TOPIC = "slots/orders"
SPANS: list[tuple[str, float, float]] = []  # (event id, start, end) of each call
_LOCK = Lock()


def work(event_id: str) -> str:
    start = time.perf_counter()
    time.sleep(0.01)
    with _LOCK:
        SPANS.append((event_id, start, time.perf_counter()))
    return event_id


@workflow(
    id="slot-lane", trigger_on_event=TOPIC, queue=Queue("slot-lane", concurrency_limit=1), strict_order=True
)
async def slot_lane(ctx: WorkflowContext, payload: EventPayload) -> str:
    return await ctx.step.run("work", work, payload.id)


def app() -> App:
    return App(__name__, [slot_lane])

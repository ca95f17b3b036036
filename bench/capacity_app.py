"""The capacity benchmark's app: one workflow per hot-key workload (``bench.capacity``)."""

from __future__ import annotations

from typing import Any

from polos import EventPayload, Queue, WorkflowContext, workflow
from polos.app import App
from polos.definition import Workflow

from bench.workload import Shape, make_workflow

ORDERS_TOPIC = "capacity/orders"
PAYMENTS_TOPIC = "capacity/payments"
THROTTLED_TOPIC = "capacity/throttled"
RATE_LIMITED_TOPIC = "capacity/rate-limited"
# The busiest a throttled key can be: the largest limit over the shortest period, every event one key.
THROTTLE = {"limit": 1000, "period": 1}
RATE_LIMIT = {"limit": 5000, "period": 1}  # its window in polos.runtime.event_flow.shards items
WAIT_HOURS = 1
QUEUE_LIMIT = 60  # 3 slot items (polos.runtime.slots.shards)
QUEUED_TOPIC = "capacity/queued"


async def _pay(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """The guide's payment pattern: wait for this order's payment."""
    paid = await ctx.step.wait_for_event(
        "payment", PAYMENTS_TOPIC, event_type="payment_succeeded", match={"order_id": payload["order_id"]}
    )
    return str(paid.data["order_id"])


async def _sleep(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """A durable sleep long enough to arm a timer item (longer than SQS's 15-minute delay)."""
    await ctx.step.wait_for("sleep", hours=WAIT_HOURS)
    return "woke"


async def _throttled(ctx: WorkflowContext, payload: EventPayload) -> str:
    return payload.id


async def _invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


_pay.__module__ = _sleep.__module__ = _invoked.__module__ = _throttled.__module__ = __name__
WORKFLOWS: list[Workflow] = [
    make_workflow("capacity-orders", Shape(1, 1, False), ORDERS_TOPIC, __name__),
    workflow(id="capacity-pay")(_pay),
    workflow(id="capacity-sleep")(_sleep),
    workflow(id="capacity-invoked")(_invoked),
    workflow(id="capacity-throttled", trigger_on_event=THROTTLED_TOPIC, throttle=THROTTLE)(_throttled),
    workflow(id="capacity-rate-limited", trigger_on_event=RATE_LIMITED_TOPIC, rate_limit=RATE_LIMIT)(
        _throttled
    ),
    # A queue whose limit never binds: every run takes and frees a slot of its one key.
    workflow(id="capacity-queued", queue=Queue("capacity-lane", concurrency_limit=QUEUE_LIMIT))(_invoked),
    # The same for events in strict order: each run also passes the start-order registry of its one key.
    workflow(
        id="capacity-queued-events",
        trigger_on_event=QUEUED_TOPIC,
        queue=Queue("capacity-event-lane", concurrency_limit=QUEUE_LIMIT),
        strict_order=True,
    )(_throttled),
]


def app() -> App:
    return App(__name__, WORKFLOWS)

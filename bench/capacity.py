"""Where one partition key caps the product: ``python -m bench --only capacity``.

The real handlers run each workload below on moto with every request metered (``infra.metering.meter``
records the units each request puts on each partition key); ``infra.metering.capacity`` turns the busiest
key of each class into the ceiling it puts on a topic, a workflow or an API key (issue 22's targets).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from bench import capacity_app
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from bench.workload import sample_event
from infra.local.stack import StackOptions
from infra.metering import prices
from infra.metering.capacity import (
    API_KEY,
    FLOW_KEY,
    QUEUE_ORDER,
    QUEUE_SLOTS,
    TIMER_SHARD,
    TOPIC_EVENTS,
    WORKFLOW_INDEX,
    KeyLoad,
    key_loads,
)
from infra.metering.meter import Meter

PER_REQUEST = 10  # events per publish request
FLOW_KEY_TARGET = 1_000  # starts/s a throttle's or rate limit's key never caps below (if its limit allows)
OPTIONS = StackOptions(visibility_timeout=900)


def _run_workflow(stack: MeteredStack, workflow_id: str, payload: dict[str, Any]) -> None:
    answer = stack.request("POST", f"/api/v1/workflows/{workflow_id}/run", {"payload": payload})
    if answer.status != 202:
        raise RuntimeError(f"run of {workflow_id} answered {answer.status}: {answer.body[:300]!r}")


def _publish_all(stack: MeteredStack, topic: str, events: list[dict[str, Any]]) -> int:
    """Publish ``events`` ``PER_REQUEST`` at a time; the number of requests."""
    requests = 0
    for start in range(0, len(events), PER_REQUEST):
        stack.publish(topic, events[start : start + PER_REQUEST])
        requests += 1
    return requests


def _published(
    stack: MeteredStack, meter: Meter, workload: str, events: list[dict[str, Any]]
) -> list[KeyLoad]:
    """The key loads of publishing ``events`` to the orders topic and running its subscriber on each."""
    meter.reset()
    requests = _publish_all(stack, capacity_app.ORDERS_TOPIC, events)
    stack.drain()
    return key_loads(
        workload, meter.calls, {TOPIC_EVENTS: ("event", len(events)), API_KEY: ("request", requests)}
    )


def _payment(order_id: str) -> dict[str, Any]:
    data = sample_event(0)["data"]
    data["order_id"] = order_id
    return {"event_type": "payment_succeeded", "data": data}


@contextmanager
def metered_stack() -> Iterator[tuple[MeteredStack, Meter]]:
    """The capacity app's stack in moto, every request metered (with a shadow client for the units)."""
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        with MeteredStack(
            capacity_app.app(),
            Path(tmp),
            meter,
            polos_handlers,
            app_target=capacity_app.__name__,
            options=OPTIONS,
        ) as stack:
            yield stack, meter


def measure(events: int = 200, waiting: int = 100) -> list[KeyLoad]:
    """Run every workload (``events`` events or runs each; ``waiting`` runs in the payment pattern) and
    return each class's busiest key per workload, tightest first within a workload."""
    found: list[KeyLoad] = []
    with metered_stack() as (stack, meter):
        stack.publish(capacity_app.ORDERS_TOPIC, [sample_event(0)])  # warm-up, not counted
        stack.drain()

        orders = [sample_event(n) for n in range(events)]
        found += _published(stack, meter, f"publish {PER_REQUEST}/request, 1 subscriber", orders)
        with_ids = [{**sample_event(n), "id": f"order-{n}"} for n in range(events)]
        found += _published(stack, meter, "publish with client event ids (publish_event steps)", with_ids)

        meter.reset()
        runs = 2 * events  # a workflow's runs spread over 16 index keys by hash: enough runs to see it
        for n in range(runs):
            _run_workflow(stack, "capacity-invoked", {"n": n})
        stack.drain()
        found += key_loads(
            "invoked runs (POST /workflows/{id}/run)",
            meter.calls,
            {WORKFLOW_INDEX: ("run", runs), API_KEY: ("request", runs)},
        )

        for n in range(waiting):
            _run_workflow(stack, "capacity-pay", {"order_id": f"pay-{n}"})
        stack.drain()
        meter.reset()
        payments = [_payment(f"pay-{n}") for n in range(waiting)]
        requests = _publish_all(stack, capacity_app.PAYMENTS_TOPIC, payments)
        stack.drain()
        found += key_loads(
            f"payment pattern: {waiting} runs wait_for_event, each matched by one event",
            meter.calls,
            {TOPIC_EVENTS: ("event", waiting), API_KEY: ("request", requests)},
        )

        meter.reset()
        for n in range(runs):
            _run_workflow(stack, "capacity-queued", {"n": n})
        stack.drain()
        found += key_loads(
            f"runs on a queue of limit {capacity_app.QUEUE_LIMIT} (one key, not binding)",
            meter.calls,
            {QUEUE_SLOTS: ("run", runs), API_KEY: ("request", runs), WORKFLOW_INDEX: ("run", runs)},
        )

        meter.reset()
        requests = _publish_all(stack, capacity_app.QUEUED_TOPIC, orders)
        stack.drain()
        found += key_loads(
            f"events on a queue of limit {capacity_app.QUEUE_LIMIT} (one key, not binding, "
            f"{PER_REQUEST}/request)",
            meter.calls,
            {
                TOPIC_EVENTS: ("event", len(orders)),
                QUEUE_SLOTS: ("run", len(orders)),
                QUEUE_ORDER: ("run", len(orders)),
                API_KEY: ("request", requests),
            },
        )

        meter.reset()
        for n in range(events):
            _run_workflow(stack, "capacity-sleep", {"n": n})
        stack.drain()
        found += key_loads(
            f"{capacity_app.WAIT_HOURS}-hour waits (timer items)",
            meter.calls,
            {
                TIMER_SHARD: ("wait", events),
                API_KEY: ("request", events),
                WORKFLOW_INDEX: ("run", events),
            },
        )

        found += flow_key_loads(stack, meter, "throttle", orders)
        found += flow_key_loads(stack, meter, "rate_limit", orders)
    return found


FLOW_WORKLOADS = {
    "throttle": (capacity_app.THROTTLED_TOPIC, capacity_app.THROTTLE),
    "rate_limit": (capacity_app.RATE_LIMITED_TOPIC, capacity_app.RATE_LIMIT),
}


def flow_key_loads(
    stack: MeteredStack, meter: Meter, option: str, events: list[dict[str, Any]]
) -> list[KeyLoad]:
    """The key loads of ``events`` of one key through a workflow with ``option`` (``throttle`` or
    ``rate_limit``); the flow key's target is what it must not cap: min(limit / period, 1,000) events/s."""
    topic, limit = FLOW_WORKLOADS[option]
    meter.reset()
    requests = _publish_all(stack, topic, events)
    stack.drain()
    loads = key_loads(
        f"events of one key ({option} {limit})",
        meter.calls,
        {
            FLOW_KEY: ("event", len(events)),
            TOPIC_EVENTS: ("event", len(events)),
            API_KEY: ("request", requests),
        },
    )
    goal = min(limit["limit"] / limit["period"], FLOW_KEY_TARGET)
    return [replace(load, target=goal) if load.key_class is FLOW_KEY else load for load in loads]

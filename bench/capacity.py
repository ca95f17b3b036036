"""Where one partition key caps the product: ``python -m bench --only capacity``.

DynamoDB serves at most 1,000 write units and 3,000 read units a second on one partition key (of a table or
of a global secondary index: an index partition that throttles fails the base table's write). The real
handlers run each workload below on moto with every request metered (``infra.metering`` records the units
of every request on each partition key it touches); for each class of key (the topic's sequence counter, the
topic's event partition, the workflow's index partition, the API key's item, ...) the busiest key's units
per unit of load (event, run, request, wait) give the rate at which that key reaches :data:`HEADROOM` of its
limit. That rate is the ceiling the class puts on a topic, a workflow or a key; the targets are issue 22's.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from bench import capacity_app
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from bench.workload import sample_event
from infra.local.stack import StackOptions
from infra.metering import prices
from infra.metering.meter import Call, Meter, PartitionUse

WRITE_LIMIT = 1_000  # write units a second on one partition key (table or index)
READ_LIMIT = 3_000  # read units a second on one partition key
HEADROOM = 0.8  # the share of a limit a key may run at
TARGET_PER_SECOND = 8_000  # issue 22: events/s per topic, new runs/s per workflow, requests/s per key
PER_REQUEST = 10  # events per publish request
OPTIONS = StackOptions(visibility_timeout=900)


@dataclass(frozen=True)
class KeyClass:
    """A kind of partition key, what it is shared by (``scope``) and the target rate of that scope."""

    name: str
    scope: str  # what shares one key of the class: "topic", "workflow", "API key", "one run", ...
    target: float | None  # per second of the workload's unit, or None (no target: reported only)
    shared: bool = True  # False: each run or request has its own key, so no rate of them reaches its limit


TOPIC_COUNTER = KeyClass("topic counter (seq#)", "topic", TARGET_PER_SECOND)
TOPIC_EVENTS = KeyClass("topic events (topic#)", "topic", TARGET_PER_SECOND)
TOPIC_CLIENT_IDS = KeyClass("topic client ids (id#)", "topic", TARGET_PER_SECOND)
WAITERS = KeyClass("topic waiters (wait#)", "topic", TARGET_PER_SECOND)
WORKFLOW_INDEX = KeyClass("workflow index (by_workflow)", "workflow", TARGET_PER_SECOND)
API_KEY = KeyClass("API key item", "API key", TARGET_PER_SECOND)
TIMER_SHARD = KeyClass("timer shard (timer#)", "all timers", None)
RUN = KeyClass("run partition (run#)", "one run", None, shared=False)
IDEMPOTENCY = KeyClass("Idempotency-Key record", "one request", None, shared=False)
OTHER = KeyClass("other", "-", None)


def key_class(use: PartitionUse) -> KeyClass:
    """The class of the partition key ``use`` touched (tables are named ``<prefix>-EventsTable``, ...)."""
    if use.index == "by_workflow":
        return WORKFLOW_INDEX
    table = use.table.rsplit("-", 1)[-1].removesuffix("Table").lower()
    if table == "apikeys":
        return API_KEY
    if table == "idempotency":
        return IDEMPOTENCY
    prefix = use.key.split("#", 1)[0]
    by_prefix = {
        "seq": TOPIC_COUNTER,
        "topic": TOPIC_EVENTS,
        "id": TOPIC_CLIENT_IDS,
        "wait": WAITERS,
        "timer": TIMER_SHARD,
        "run": RUN,
    }
    return by_prefix.get(prefix, OTHER)


@dataclass(frozen=True)
class KeyLoad:
    """The busiest key of one class in one workload, and the ceiling it implies."""

    workload: str
    key_class: KeyClass
    key: str
    unit: str  # what one unit of load is: "event", "run", "request", "wait"
    read_units: float  # on that key, per unit of load
    write_units: float

    @property
    def ceiling(self) -> float:
        """Units of load a second at which the key reaches ``HEADROOM`` of its read or write limit."""
        rates = [
            HEADROOM * limit / units
            for limit, units in ((READ_LIMIT, self.read_units), (WRITE_LIMIT, self.write_units))
            if units > 0
        ]
        return min(rates, default=math.inf)

    @property
    def verdict(self) -> str:
        target = self.key_class.target
        if target is None:
            return "-"
        return "PASS" if self.ceiling >= target else "FAIL"


def key_loads(workload: str, calls: Iterable[Call], loads: dict[KeyClass, tuple[str, int]]) -> list[KeyLoad]:
    """Per key class, the busiest key of ``calls`` and its units per unit of load. ``loads`` names each
    class's unit and how many of them the workload made (classes it does not name count per the unit of
    ``loads[TOPIC_EVENTS]``, or of the first entry; a class of unshared keys counts per run or request)."""
    default = loads.get(TOPIC_EVENTS) or next(iter(loads.values()))
    totals: dict[tuple[KeyClass, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for call in calls:
        for use in call.partitions:
            units = totals[(key_class(use), f"{use.index or 'table'}:{use.key}")]
            units[0] += use.read_units
            units[1] += use.write_units
    busiest: dict[KeyClass, KeyLoad] = {}
    for (cls, key), (reads, writes) in totals.items():
        # A key of its own per run or request: its units are per that one run or request.
        unit, count = loads.get(cls, default) if cls.shared else (cls.scope.removeprefix("one "), 1)
        load = KeyLoad(workload, cls, key, unit, reads / count, writes / count)
        if cls not in busiest or load.ceiling < busiest[cls].ceiling:
            busiest[cls] = load
    return sorted(busiest.values(), key=lambda load: load.ceiling)


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


def _payment(order_id: str) -> dict[str, Any]:
    data = sample_event(0)["data"]
    data["order_id"] = order_id
    return {"event_type": "payment_succeeded", "data": data}


def measure(events: int = 200, waiting: int = 100) -> list[KeyLoad]:
    """Run every workload (``events`` events or runs each; ``waiting`` runs in the payment pattern) and
    return each class's busiest key per workload, tightest first within a workload."""
    found: list[KeyLoad] = []
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
            stack.publish(capacity_app.ORDERS_TOPIC, [sample_event(0)])  # warm-up, not counted
            stack.drain()

            meter.reset()
            orders = [sample_event(n) for n in range(events)]
            requests = _publish_all(stack, capacity_app.ORDERS_TOPIC, orders)
            stack.drain()
            found += key_loads(
                f"publish {PER_REQUEST}/request, 1 subscriber",
                meter.calls,
                {TOPIC_EVENTS: ("event", events), API_KEY: ("request", requests)},
            )

            meter.reset()
            with_ids = [{**sample_event(n), "id": f"order-{n}"} for n in range(events)]
            requests = _publish_all(stack, capacity_app.ORDERS_TOPIC, with_ids)
            stack.drain()
            found += key_loads(
                "publish with client event ids (publish_event steps)",
                meter.calls,
                {TOPIC_EVENTS: ("event", events), API_KEY: ("request", requests)},
            )

            meter.reset()
            for n in range(events):
                _run_workflow(stack, "capacity-invoked", {"n": n})
            stack.drain()
            found += key_loads(
                "invoked runs (POST /workflows/{id}/run)",
                meter.calls,
                {WORKFLOW_INDEX: ("run", events), API_KEY: ("request", events)},
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
    return found


def rate(load: KeyLoad) -> str:
    """The ceiling as text: a rate, or why there is none (a key no other run or request shares)."""
    if not load.key_class.shared:
        return f"not shared ({load.key_class.scope})"
    return "unbounded" if math.isinf(load.ceiling) else f"{load.ceiling:,.0f} {load.unit}s/s"

"""What a durable wait costs: a 1-step run with a 1-hour wait next to the same run without one.

Both runs go through the real handlers on moto (``polos.testing``'s in-process stack) with every AWS request
metered (``infra.metering``, DynamoDB units from a shadow client); the wait's cost is the difference. Counted:
SQS requests, DynamoDB read and write units (index writes included), and the Lambda invocation the wake-up
adds (its duration is taken as :data:`RESUME_MS`, an assumption: a replay with one step). The timers
function's fixed cost (16 Queries a minute, whatever the number of waits: about 691,000 a month) is not per
wait and is left out; nothing is billed per second of waiting. Next to it: the per-operation price of a
wait in Lambda durable functions and of a Wait state in Step Functions Standard.

Event waits (:func:`measure_event_wait`) are measured on the publish path, one API request each (the API
key check included), and whole:

- a publish to a topic that never had waiters, next to the same publish with the publish path's only door
  to the waiters (``polos.publish.waiters.match_published``) replaced by a stub: the request count and the
  operations must be equal, and no request may name a waiter item (``wait#<topic>``);
- the same for a topic whose waiters are all gone and whose waits have ended (its marks have lapsed: the
  clock the waiters module reads moved past them); before the waits end, a publish reads one empty waiter
  partition (measured too, next to the quiet topic);
- a publish whose event matches one ``wait_for_event``, next to the publish to the topic without waiters:
  the added requests, by operation;
- the matched wait whole: a 1-step run with one ``wait_for_event`` (registered, matched by that publish,
  resumed) next to the same run without it, like the 1-hour wait; next to it, the price of a callback (one
  durable operation) in Lambda durable functions.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from polos import WorkflowContext, workflow
from polos.app import App

from bench.workload import sample_event
from infra.metering import prices
from infra.metering.meter import Call, Meter
from infra.metering.units import READ_UNIT_BYTES

WAIT_HOURS = 1
RESUME_MS = 100  # assumed billed duration of the resumed attempt (a replay and one step)
WORKER_MEMORY_GB = 0.5
PAYMENT_TOPIC = "bench/payments"
QUIET_TOPIC = "bench/quiet"


@workflow(id="bench-no-wait")
async def no_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(id="bench-wait")
async def with_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for("pause", hours=WAIT_HOURS)
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(id="bench-wait-event")
async def with_event_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for_event("payment", PAYMENT_TOPIC, match={"order_id": payload["order_id"]})
    return str(await ctx.step.run("work", lambda: "done"))


@dataclass(frozen=True)
class WaitCost:
    """Requests and dollars one wait adds to a run."""

    requests: int
    sqs_requests: int
    read_units: float
    write_units: float
    lambda_invocations: int

    def usd_per_million(self) -> float:
        lambda_usd = self.lambda_invocations * (
            prices.LAMBDA_REQUEST.usd + RESUME_MS / 1000 * WORKER_MEMORY_GB * prices.LAMBDA_GB_SECOND_ARM.usd
        )
        return prices.MILLION * (
            self.sqs_requests * prices.SQS_REQUEST.usd
            + self.read_units * prices.DYNAMODB_READ_UNIT.usd
            + self.write_units * prices.DYNAMODB_WRITE_UNIT.usd
            + lambda_usd
        )


def _run(stack: Any, meter: Meter, workflow_id: str) -> list[Call]:
    meter.reset()
    run_id = stack.invoke(workflow_id, {})
    stack.drain()
    stack.advance(hours=WAIT_HOURS)
    stack.drain()
    if stack.run(run_id)["status"] != "completed":
        raise RuntimeError(f"the {workflow_id} run did not complete")
    return [call for call in meter.calls if _billed_per_run(call)]


def _billed_per_run(call: Call) -> bool:
    """Leaves out what is not per run in the cloud: the timers sweeps' empty Queries (the timers function's
    fixed cost), the local mapping's empty receives and queue-depth checks (Lambda's pollers' own)."""
    if call.service == "sqs":
        sends_or_deletes = ("SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch")
        return call.operation in sends_or_deletes or (call.operation == "ReceiveMessage" and not call.empty)
    key = str(call.params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", ""))
    return not (call.operation == "Query" and key.startswith("timer#") and call.read_units <= 0.5)


def _wait_cost(waited: list[Call], plain: list[Call]) -> WaitCost:
    """What ``waited`` costs more than ``plain`` (the resumed attempt: one more Lambda invocation)."""

    def total(calls: list[Call], attribute: str) -> float:
        return sum(float(getattr(call, attribute)) for call in calls)

    sqs = [call for call in waited if call.service == "sqs"]
    sqs_plain = [call for call in plain if call.service == "sqs"]
    return WaitCost(
        requests=len(waited) - len(plain),
        sqs_requests=int(total(sqs, "billed_requests") - total(sqs_plain, "billed_requests")),
        read_units=total(waited, "read_units") - total(plain, "read_units"),
        write_units=total(waited, "write_units") - total(plain, "write_units"),
        lambda_invocations=1,  # the resumed attempt
    )


def measure() -> WaitCost:
    """The requests and units a 1-hour wait adds to a 1-step invoked run."""
    import boto3
    from polos.aws import settings
    from polos.testing import local_stack

    with local_stack(App("bench-waits", [no_wait, with_wait])) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        plain = _run(stack, meter, "bench-no-wait")
        waited = _run(stack, meter, "bench-wait")
        meter.detach()

    return _wait_cost(waited, plain)


@dataclass(frozen=True)
class PublishCost:
    """The AWS requests of one ``POST /api/v1/events/publish`` of one event (its API key check included)."""

    operations: tuple[tuple[str, int], ...]  # ("dynamodb.Query", 1), ... in first-seen order
    read_units: float
    write_units: float
    sqs_requests: int
    waiter_requests: int  # requests naming a waiter item (``wait#<topic>``)

    @property
    def requests(self) -> int:
        return sum(count for _, count in self.operations)

    def beyond(self, other: PublishCost) -> dict[str, int]:
        """The operations this publish made more than ``other`` (only those added)."""
        added = Counter(dict(self.operations))
        added.subtract(Counter(dict(other.operations)))
        return {operation: count for operation, count in added.items() if count > 0}


def _publish_cost(calls: list[Call]) -> PublishCost:
    operations = Counter(f"{call.service}.{call.operation}" for call in calls)
    return PublishCost(
        operations=tuple(operations.items()),
        read_units=sum(call.read_units for call in calls),
        write_units=sum(call.write_units for call in calls),
        sqs_requests=sum(call.billed_requests for call in calls if call.service == "sqs"),
        waiter_requests=sum(1 for call in calls if '"wait#' in json.dumps(call.params)),
    )


@dataclass(frozen=True)
class EventWaitCost:
    """Publishing with and without event waiters, and what one matched ``wait_for_event`` costs whole."""

    quiet: PublishCost  # a topic that never had waiters
    quiet_without_waiters_path: PublishCost  # the same publish, the waiter path stubbed out
    emptied: PublishCost  # a topic whose one waiter was matched and removed, its wait's marks lapsed
    emptied_without_waiters_path: PublishCost
    drained: PublishCost  # the same topic before its marks lapse: one empty waiter partition read
    matched: PublishCost  # the event matches one waiting step
    wait: WaitCost  # the matched wait, whole, next to the same run without it

    @property
    def added_by_match(self) -> dict[str, int]:
        """The requests a matched ``wait_for_event`` adds to its publish, by operation."""
        return self.matched.beyond(self.quiet)


def _event(order_id: str) -> list[dict[str, Any]]:
    """The headline's 1 KB order (random text, so compressing the stored item does not flatter it)."""
    data = sample_event(0)["data"]
    data["order_id"] = order_id
    return [{"data": data}]


def _waiters_path_stubbed() -> Any:
    """The publish path without its waiter matching: what a publish did before ``wait_for_event``."""
    from unittest import mock

    from polos.publish import waiters

    return mock.patch.object(waiters, "match_published", return_value=0)


def _after_the_waits_ended() -> Any:
    """The waiters module's clock past every mark a wait of this bench left (untimed: the renewal horizon)."""
    import time
    from types import SimpleNamespace
    from unittest import mock

    from polos.publish import waiters

    later = waiters.UNTIMED_HORIZON_SECONDS + waiters.MARK_SLACK_SECONDS + 1
    return mock.patch.object(waiters, "time", SimpleNamespace(time=lambda: time.time() + later))


def _publish(stack: Any, meter: Meter, topic: str, order_id: str) -> PublishCost:
    meter.reset()
    stack.publish(topic, _event(order_id))
    return _publish_cost(list(meter.calls))


def _billed(meter: Meter) -> list[Call]:
    return [call for call in meter.calls if _billed_per_run(call)]


def measure_event_wait() -> EventWaitCost:
    """Publishes to topics with and without waiters, and one ``wait_for_event`` matched by a publish."""
    import boto3
    from polos.aws import settings
    from polos.testing import local_stack

    with local_stack(App("bench-event-waits", [no_wait, with_event_wait])) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        quiet = _publish(stack, meter, QUIET_TOPIC, "o-0")
        with _waiters_path_stubbed():
            quiet_stubbed = _publish(stack, meter, QUIET_TOPIC, "o-0")

        meter.reset()
        plain_run = stack.invoke("bench-no-wait", {})
        stack.drain()
        plain = _billed(meter)

        meter.reset()
        run_id = stack.invoke("bench-wait-event", {"order_id": "o-1"})
        stack.drain()
        registered = _billed(meter)
        if stack.run(run_id)["status"] != "waiting":
            raise RuntimeError("the bench-wait-event run does not wait")
        matched = _publish(stack, meter, PAYMENT_TOPIC, "o-1")
        matched_calls = list(meter.calls)
        meter.reset()
        stack.drain()
        resumed = _billed(meter)
        if {stack.run(run)["status"] for run in (plain_run, run_id)} != {"completed"}:
            raise RuntimeError("a bench-event-waits run did not complete")

        drained = _publish(stack, meter, PAYMENT_TOPIC, "o-2")  # its one waiter is gone, its marks live
        with _after_the_waits_ended():
            emptied = _publish(stack, meter, PAYMENT_TOPIC, "o-2")
        with _waiters_path_stubbed():
            emptied_stubbed = _publish(stack, meter, PAYMENT_TOPIC, "o-2")
        meter.detach()

    # The publish itself (what the same publish costs on a topic without waiters) is not the wait's.
    whole = _wait_cost(registered + matched_calls + resumed, plain)
    return EventWaitCost(
        quiet=quiet,
        quiet_without_waiters_path=quiet_stubbed,
        emptied=emptied,
        emptied_without_waiters_path=emptied_stubbed,
        drained=drained,
        matched=matched,
        wait=WaitCost(
            requests=whole.requests - quiet.requests,
            sqs_requests=whole.sqs_requests - quiet.sqs_requests,
            read_units=whole.read_units - quiet.read_units,
            write_units=whole.write_units - quiet.write_units,
            lambda_invocations=1,
        ),
    )


# --- the payment pattern's sustained rate per topic ---------------------------------------------------

PARTITION_READ_UNITS = 3000  # AWS's per-partition limits, per second
PARTITION_WRITE_UNITS = 1000
PAYMENT_RATE_TARGET = 1000  # events/s per topic (issue 22)
PAYMENTS_PER_REQUEST = 10  # the capacity targets' publish: 10 events of 1 KB per request
# The registration race's look-back reads the events published while a waiter registers: from the step's
# anchor to the one read after its waiter was stored (a journal PutItem and the waiter's PutItem in
# between). Taken as 10 ms in-region, it reads rate x 10 ms events per registration: the one term that
# grows with the rate squared, modelled here since the bench's registrations run one at a time.
REGISTRATION_WINDOW_SECONDS = 0.010
CAPACITY_TOPIC = "bench/paid"
PAYMENT_ORDERS = 100  # order runs metered (their units per event do not depend on how many)
DRAIN_SECONDS = 900  # a slow machine's limit for running them all


@workflow(id="bench-pay-order")
async def pay_order(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for_event(
        "payment", CAPACITY_TOPIC, timeout=3600, match={"order_id": payload["order_id"]}
    )
    return str(await ctx.step.run("ship", lambda: "shipped"))


@dataclass(frozen=True)
class PartitionLoad:
    """The units one payment event puts on one class of partition keys."""

    hot: str  # the class: a key every event of the topic uses, or the busiest key of a spread class
    per_topic: bool  # one key per topic (its limit caps the topic); else per value, run or request
    read_units: float  # per event, on the class's busiest key
    write_units: float

    @property
    def ceiling(self) -> float:
        """Events/s one key of the class sustains at AWS's per-partition limits."""
        limits = [
            PARTITION_READ_UNITS / self.read_units if self.read_units else math.inf,
            PARTITION_WRITE_UNITS / self.write_units if self.write_units else math.inf,
        ]
        return min(limits)


@dataclass(frozen=True)
class PaymentCapacity:
    """The payment pattern (one ``wait_for_event`` per order, matched on ``order_id``) metered whole."""

    events: int
    loads: tuple[PartitionLoad, ...]
    look_back_units_per_event: float  # read units of one stored payment event in a strongly consistent Query

    def look_back_ceiling(self) -> float:
        """The rate R at which the registrations' look-backs (R x window events each, R a second) take the
        topic's event partition's read limit: R^2 x window x units = limit."""
        return math.sqrt(
            PARTITION_READ_UNITS / (REGISTRATION_WINDOW_SECONDS * self.look_back_units_per_event)
        )

    def sustained(self) -> float:
        per_topic = [load.ceiling for load in self.loads if load.per_topic]
        return min([*per_topic, self.look_back_ceiling()])


def partition_class(table: str, partition: str, tables: Any) -> tuple[str, bool]:
    """The class of a partition key: its label and whether one key serves the whole topic."""
    if table == tables.keys_table:
        return "API key item (one key for every publisher)", True
    if table == tables.idempotency_table:
        return "idempotency keys (one per request)", False
    if partition.startswith("seq#"):
        return "topic counter (seq#<topic>)", True
    if partition.startswith("topic#"):
        return "topic events (topic#<topic>)", True
    if partition.startswith("wait#") and "#" in partition.removeprefix("wait#"):
        return "waiter index (wait#<topic>#<value>, per order_id)", False
    if partition.startswith("wait#"):
        return "match-less waiters (wait#<topic>)", True
    return "run partitions (run#<run_id>, per run)", False


def _reads(call: Call) -> list[tuple[str, str, float]]:
    """(table, partition, read units) of a metered read request."""
    params = call.params
    table = str(params.get("TableName", ""))
    if call.operation == "GetItem":
        return [(table, str(params["Key"]["pk"]["S"]), call.read_units)]
    if call.operation == "Query":
        return [(table, str(params["ExpressionAttributeValues"][":pk"]["S"]), call.read_units)]
    if call.operation == "BatchGetItem":
        keys = [
            (name, str(key["pk"]["S"]))
            for name, wanted in params["RequestItems"].items()
            for key in wanted["Keys"]
        ]
        return [(name, partition, call.read_units / len(keys)) for name, partition in keys]
    return []


def payment_loads(calls: list[Call], events: int) -> tuple[PartitionLoad, ...]:
    """Per class of partition keys, the units per event on its busiest key."""
    from polos.aws import settings

    tables = settings.get_settings()
    per_key: dict[tuple[str, str], list[float]] = {}
    spread: dict[str, bool] = {}
    for call in calls:
        if call.service != "dynamodb":
            continue
        table = str(call.params.get("TableName", ""))
        touched = [(t, p, units, 0.0) for t, p, units in _reads(call)]
        touched += [
            (_table_of(call, item.kind, tables), item.key, 0.0, float(item.units)) for item in call.items
        ]
        for name, partition, reads, writes in touched:
            label, per_topic = partition_class(name or table, partition, tables)
            spread[label] = per_topic
            units = per_key.setdefault((label, partition), [0.0, 0.0])
            units[0] += reads
            units[1] += writes
    loads = []
    for label, per_topic in spread.items():
        keys = [units for (name, _), units in per_key.items() if name == label]
        busiest = max(
            keys, key=lambda units: max(units[0] / PARTITION_READ_UNITS, units[1] / PARTITION_WRITE_UNITS)
        )
        loads.append(PartitionLoad(label, per_topic, busiest[0] / events, busiest[1] / events))
    return tuple(sorted(loads, key=lambda load: load.ceiling))


def _table_of(call: Call, kind: str, tables: Any) -> str:
    """The table an item written by ``call`` lives in (``kind`` is ``<table>:<item kind>``)."""
    return str(call.params.get("TableName") or kind.split(":", 1)[0])


def measure_payment_capacity(orders: int = PAYMENT_ORDERS) -> PaymentCapacity:
    """``orders`` order runs each ``wait_for_event`` their own payment (1 h timeout, ``match`` on
    ``order_id``), then their payments are published, 10 per request, and the runs resume: every request
    metered, its units put on the partition keys it touched."""
    import boto3
    from polos.aws import settings
    from polos.testing import local_stack

    with local_stack(App("bench-payments", [pay_order])) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        run_ids = [stack.invoke("bench-pay-order", {"order_id": f"ord-{n:08d}"}) for n in range(orders)]
        stack.drain(timeout=DRAIN_SECONDS)
        for start in range(0, orders, PAYMENTS_PER_REQUEST):
            batch = [sample_event(n) for n in range(start, min(orders, start + PAYMENTS_PER_REQUEST))]
            stack.publish(CAPACITY_TOPIC, [{"data": event["data"]} for event in batch])
        stack.drain(timeout=DRAIN_SECONDS)
        calls = [call for call in meter.calls if _billed_per_run(call)]
        meter.detach()
        if {stack.run(run_id)["status"] for run_id in run_ids} != {"completed"}:
            raise RuntimeError("a bench-pay-order run did not complete")
        loads = payment_loads(calls, orders)  # while the stack's table names are set
    stored = [
        item.size
        for call in calls
        for item in call.items
        if item.key.split("#")[:2] == ["topic", CAPACITY_TOPIC]  # the topic's event blocks
    ]
    return PaymentCapacity(orders, loads, sum(stored) / len(stored) / READ_UNIT_BYTES)

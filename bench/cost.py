"""Cost per million events: the real handlers (and the two baselines) on moto, every request counted.

A scenario publishes ``events`` events to one topic, ``per_request`` per HTTP request, then drains the
subscribers' queues through the event source mapping model (so batches are full: a busy steady state). A
*sparse* scenario drains after every request instead (one message per delivered batch). One warm-up event
runs first and is not counted (cold starts are amortised away). The bill: HTTP API requests (512 KB
increments), Lambda invocations and GB-seconds (see ``bench.stack.LambdaCall``), SQS requests (64 KB chunks;
the mapping's ReceiveMessage per delivered batch and DeleteMessageBatch included; empty polls are per queue,
not per event, and are priced separately), DynamoDB read/write units (index writes included), DynamoDB
storage and point-in-time recovery for the retention period (``bench.storage``), CloudWatch Logs ingestion
at the template's log level with metrics on (``bench.logs``).
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from polos.aws import settings

from bench import fixed, storage
from bench.baselines import NaiveSystem, PowertoolsSystem
from bench.fixed import FixedLine
from bench.stack import Handlers, MeteredStack, Usage, aws_in_process, polos_handlers
from bench.storage import Stored
from bench.workload import APP_TARGET, SHAPES, Shape, app, sample_event
from infra.local.stack import StackOptions
from infra.metering import prices
from infra.metering.meter import Call, Meter
from infra.metering.units import write_units
from infra.model import AppModel

SYSTEMS = ("polos", "powertools", "naive")
KEYLESS = "powertools, key ignored"  # the fair baseline without idempotent publishing: run for the targets
PER_REQUEST = (1, 10, 100)


@dataclass(frozen=True)
class Scenario:
    per_request: int
    shape: Shape
    sparse: bool = False  # 1 event/s: each delivery carries what the mapping batches at that rate
    data: str = "base64"  # what fills the events' data (bench.workload.DATA_KINDS)

    @property
    def label(self) -> str:
        mode = "batch(10)" if self.shape.batch else "single"
        traffic = f", sparse ({SPARSE_EVENTS_PER_SECOND:g} event/s)" if self.sparse else ""
        data = f", random-{self.data.upper()} data" if self.data != "base64" else ""
        return (
            f"{self.per_request}/req, {self.shape.subscribers} sub, {self.shape.steps}-step, {mode}"
            f"{traffic}{data}"
        )


# The headline: 10 events per request, 1 subscriber, a 1-step single-event workflow, 1 KB events.
TARGET = Scenario(10, Shape(1, 1, False))
SPARSE_EVENTS_PER_SECOND = 1.0
SPARSE = Scenario(1, Shape(1, 1, False), sparse=True)
SPARSE_BATCH = Scenario(1, Shape(1, 1, True), sparse=True)
# The headline with the worst case of text as data (random printable ASCII), so compression is not judged
# on friendly data alone.
WORST_DATA = Scenario(10, Shape(1, 1, False), data="ascii")
SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario(n, shape) for n in PER_REQUEST for shape in SHAPES),
    SPARSE,
    SPARSE_BATCH,
    WORST_DATA,
)
SMOKE_SCENARIOS = (TARGET, Scenario(10, Shape(3, 5, True)), SPARSE)
# A run's lease is the visibility timeout less a second: long enough that a slow machine never lets one
# lapse mid-run (which would leave records for redelivery and bill them twice).
OPTIONS = StackOptions(visibility_timeout=900)

# Issue 12's target: the headline in dollars per million events (per event, before the fixed lines).
TARGET_USD_PER_MILLION = 2.50
# Issue 26's targets: all in (fixed lines included) at 10M events a month, against the fair baseline.
FIVE_STEP = Scenario(10, Shape(1, 5, False))
RATIO_TARGETS: dict[Scenario, float] = {
    TARGET: 1.0,
    FIVE_STEP: 0.7,
    Scenario(10, Shape(1, 1, True)): 1.8,
}


@dataclass(frozen=True)
class Lever:
    """A change not made yet, and what the meter says it would save (dollars per million events)."""

    name: str
    usd_per_million: float
    how: str


@dataclass
class Bill:
    """What one system was billed for one scenario."""

    system: str
    scenario: Scenario
    events: int
    http_requests: int
    invocations: Counter[str]
    gb_seconds: float
    sqs_requests: int
    dynamodb_requests: int
    read_units: float
    write_units: float  # index writes included
    index_write_units: float
    idle_receives: int
    log_bytes: int = 0
    log_events: int = 0
    log_bytes_by_function: Counter[str] = field(default_factory=Counter)
    stored: Stored = field(default_factory=Stored)
    retention_days: int = 30
    operations: Counter[str] = field(default_factory=Counter)
    levers: list[Lever] = field(default_factory=list)
    metrics: frozenset[str] = frozenset()  # CloudWatch custom metrics its handlers emitted
    fixed_lines: list[FixedLine] = field(default_factory=list)  # the deployment's monthly lines (bench.fixed)

    @classmethod
    def of(
        cls,
        system: str,
        scenario: Scenario,
        events: int,
        calls: list[Call],
        usage: Usage,
        stored: Stored,
    ) -> Bill:
        billed = [c for c in calls if not c.empty]
        ddb = [c for c in billed if c.service == "dynamodb"]
        logs: Counter[str] = Counter()
        for call in usage.lambdas:
            logs[call.function] += call.log.billed_bytes
        bill = cls(
            system=system,
            scenario=scenario,
            events=events,
            http_requests=usage.http_billed,
            invocations=Counter(call.function for call in usage.lambdas),
            gb_seconds=sum(call.gb_seconds for call in usage.lambdas),
            sqs_requests=sum(c.billed_requests for c in billed if c.service == "sqs"),
            dynamodb_requests=len(ddb),
            read_units=sum(c.read_units for c in ddb),
            write_units=sum(c.write_units for c in ddb),
            index_write_units=sum(c.index_write_units for c in ddb),
            idle_receives=len(calls) - len(billed),
            log_bytes=sum(logs.values()),
            log_events=sum(call.log.events for call in usage.lambdas),
            log_bytes_by_function=logs,
            stored=stored,
            retention_days=settings.get_settings().retention_days,
            operations=Counter(f"{c.service}.{c.operation}" for c in billed),
            metrics=frozenset().union(*(call.log.metrics for call in usage.lambdas)),
        )
        bill.levers = storage_levers(bill, ddb)
        return bill

    @property
    def lambda_invocations(self) -> int:
        return sum(self.invocations.values())

    def per_event(self, value: float) -> float:
        return value / self.events

    def usd_lines(self) -> dict[str, float]:
        """Dollars of this run, line by line (the per-service breakdown)."""
        months = storage.retention_months(self.retention_days + storage.TTL_DELETE_LAG_DAYS)
        return {
            "HTTP-API requests": self.http_requests * prices.HTTP_API_REQUEST.usd,
            "Lambda requests": self.lambda_invocations * prices.LAMBDA_REQUEST.usd,
            "Lambda duration": self.gb_seconds * prices.LAMBDA_GB_SECOND_ARM.usd,
            "SQS requests": self.sqs_requests * prices.SQS_REQUEST.usd,
            "DynamoDB writes (tables)": (self.write_units - self.index_write_units)
            * prices.DYNAMODB_WRITE_UNIT.usd,
            "DynamoDB writes (index)": self.index_write_units * prices.DYNAMODB_WRITE_UNIT.usd,
            "DynamoDB reads": self.read_units * prices.DYNAMODB_READ_UNIT.usd,
            "DynamoDB storage (tables)": self.stored.table_bytes * months * prices.DYNAMODB_STORAGE.usd,
            "DynamoDB storage (index)": self.stored.index_bytes * months * prices.DYNAMODB_STORAGE.usd,
            "DynamoDB PITR": self.stored.table_bytes * months * prices.DYNAMODB_PITR.usd,
            "CloudWatch Logs ingestion": self.log_bytes * prices.CLOUDWATCH_LOGS_INGESTION.usd,
            "CloudWatch Logs storage": self.log_bytes
            * storage.retention_months(self.retention_days)
            * prices.CLOUDWATCH_LOGS_STORAGE.usd,
        }

    def usd(self) -> dict[str, float]:
        """Dollars of this run by service."""
        by_service: dict[str, float] = defaultdict(float)
        for line, usd in self.usd_lines().items():
            by_service[line.split(" ")[0]] += usd
        return dict(by_service)

    def usd_per_million(self) -> float:
        return sum(self.usd_lines().values()) / self.events * prices.MILLION

    def line_per_million(self, line: str) -> float:
        return self.usd_lines()[line] / self.events * prices.MILLION

    def usd_per_event(self) -> float:
        return sum(self.usd_lines().values()) / self.events

    def monthly_usd(self, events_per_month: int) -> float:
        """The month's bill at ``events_per_month``: the fixed lines plus every event's share."""
        return fixed.total(self.fixed_lines) + self.usd_per_event() * events_per_month

    def all_in_per_million(self, events_per_month: int = fixed.HEADLINE_VOLUME) -> float:
        """Dollars per million events all in (fixed lines included) at ``events_per_month``."""
        return self.monthly_usd(events_per_month) / events_per_month * prices.MILLION


def _per_million(bill: Bill, usd: float) -> float:
    return usd / bill.events * prices.MILLION


def storage_levers(bill: Bill, ddb: list[Call]) -> list[Lever]:
    """What the storage levers of issue 12 would still save on this bill, from what the meter saw. The first
    three are built (keys-only index, lease first, last step with the outcome): what they show is what is
    left to save (0 on the single-event headline)."""
    wru, rru = prices.DYNAMODB_WRITE_UNIT.usd, prices.DYNAMODB_READ_UNIT.usd
    months = storage.retention_months(bill.retention_days)
    keys_only = sum(c.index_write_units - c.index_write_units_keys_only for c in ddb) * wru
    keys_only += (
        (bill.stored.index_bytes - bill.stored.index_bytes_keys_only) * months * prices.DYNAMODB_STORAGE.usd
    )
    worker = [c for c in ddb if (c.tag or "").startswith("WorkerFunction")]
    journal_reads = sum(c.read_units for c in worker if c.operation == "Query") * rru
    # Last step with the outcome: per run, its last journal entry's write joins the outcome's update.
    last_step: dict[str, int] = {}
    run_size: dict[str, int] = {}
    merged_already: set[str] = set()  # runs whose outcome's update carried their last step
    for call in worker:
        if "#step" in call.params.get("ExpressionAttributeNames", {}):
            merged_already.add(call.params["Key"]["pk"]["S"])
        for item in call.items:
            if item.kind.endswith("/step#"):
                last_step[item.key] = item.size
            elif item.kind.endswith("/run"):
                run_size[item.key] = item.size
    merged = 0
    for key, step_size in last_step.items():
        if key in merged_already:
            continue
        after = run_size.get(key, 0)
        grown = write_units(after + step_size) - write_units(after)  # the outcome item grows (and its copy)
        merged += write_units(step_size) - grown * 2
    # Fewer, larger event items: one request's event items (one BatchWriteItem of the API) in one item.
    packed = 0
    for call in ddb:
        events = [item for item in call.items if item.kind.startswith("events:topic#")]
        if (call.tag or "").startswith("ApiFunction") and len(events) > 1:
            packed += sum(i.units for i in events) - math.ceil(sum(i.size for i in events) / 1024)
    return [
        Lever(
            "keys-only runs index",
            _per_million(bill, keys_only),
            "index writes and copies as if by_workflow projected keys only (it does: list pages fetch "
            "their runs by BatchGetItem, not counted: no listing in this workload)",
        ),
        Lever(
            "lease first, journal Query only after an earlier attempt",
            _per_million(bill, journal_reads),
            "the worker's Query read units (every delivery here is a first attempt)",
        ),
        Lever(
            "last step's journal entry written with the outcome",
            _per_million(bill, merged * wru),
            "per run, the last step's item units less the units the outcome item (and its index copy) gains",
        ),
        Lever(
            "one item per request's events",
            _per_million(bill, packed * wru),
            "event items of one publish in one item: their units less ceil(total size / 1 KB)",
        ),
    ]


def _powertools_handlers(model: AppModel) -> Handlers:
    system = PowertoolsSystem()
    return Handlers(api=system.api, worker=system.worker)


def _keyless_handlers(model: AppModel) -> Handlers:
    system = PowertoolsSystem(honour_idempotency_key=False)
    return Handlers(api=system.api, worker=system.worker)


def _naive_handlers(model: AppModel) -> Handlers:
    system = NaiveSystem()
    return Handlers(api=system.api, worker=system.worker)


HANDLERS: dict[str, Callable[[AppModel], Handlers]] = {
    "polos": polos_handlers,
    "powertools": _powertools_handlers,
    "naive": _naive_handlers,
    KEYLESS: _keyless_handlers,
}


def _tables() -> list[str]:
    names = settings.get_settings()
    return [names.events_table, names.runs_table, names.keys_table, names.idempotency_table]


def run(system: str, scenario: Scenario, events: int = 100) -> Bill:
    """Publish ``events`` events (rounded up to whole requests) and bill everything until they ran."""
    requests = -(-events // scenario.per_request)
    total = requests * scenario.per_request
    topic, workflow_ids = scenario.shape.topic, scenario.shape.workflow_ids()
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        shadow = boto3.client("dynamodb", region_name=prices.REGION)
        meter = Meter(shadow=shadow)
        with MeteredStack(
            app(),
            Path(tmp),
            meter,
            HANDLERS[system],
            app_target=APP_TARGET,
            options=OPTIONS,
        ) as stack:
            stack.publish(topic, [sample_event(0, scenario.data)])  # warm-up, not billed
            stack.drain(workflow_ids)
            stack.reset_usage()
            retention, began = settings.get_settings().retention_days, time.time()
            before = storage.measure(shadow, _tables(), retention, began)
            delivered = 0
            batched = events_per_delivery(stack.model, workflow_ids) if scenario.sparse else 0
            for r in range(requests):
                stack.publish(
                    topic,
                    [
                        sample_event(1 + r * scenario.per_request + i, scenario.data)
                        for i in range(scenario.per_request)
                    ],
                    idempotency_key=client_key(r),
                )
                if scenario.sparse and (r + 1) % batched == 0:
                    delivered += stack.drain(workflow_ids)
            delivered += stack.drain(workflow_ids)
            expected = total * len(workflow_ids)
            if delivered != expected:
                raise RuntimeError(f"{system} {scenario.label}: {delivered} deliveries, expected {expected}")
            stored = storage.measure(shadow, _tables(), retention, began) - before
            bill = Bill.of(system, scenario, total, list(meter.calls), stack.usage, stored)
            queues = len(workflow_ids)
            if system == "polos":
                sweep = fixed.Sweep(*stack.sweep_timers())
                bill.metrics |= sweep.log.metrics
                bill.fixed_lines = fixed.polos_lines(queues, stack.model, APP_TARGET, bill.metrics, sweep)
            else:
                bill.fixed_lines = fixed.baseline_lines(queues, bill.metrics)
            return bill


def client_key(n: int) -> str:
    """An ``Idempotency-Key`` like the one ``PolosClient`` sends with every publish it is not given one for
    (the fair baseline honours it with Powertools' idempotency utility; the naive one ignores it)."""
    return f"polos-client-{uuid.UUID(int=n)}"


def events_per_delivery(model: AppModel, workflow_ids: list[str]) -> int:
    """Events one delivery carries at :data:`SPARSE_EVENTS_PER_SECOND`: a poller hands a message over as
    soon as it arrives unless the mapping's batching window holds it back (then a window's worth, at most
    the batch size)."""
    queue = next(q for q in model.queues if q.workflow_id == workflow_ids[0])
    window = queue.batching_window_seconds or 0
    return min(queue.batch_size, max(1, int(window * SPARSE_EVENTS_PER_SECOND)))


def durable_functions_usd_per_million(shape: Shape) -> float:
    """Reference: Lambda durable functions' operation charge alone (one operation per step per run)."""
    runs_per_event = shape.subscribers / (10 if shape.batch else 1)
    return runs_per_event * shape.steps * prices.DURABLE_OPERATION.usd * prices.MILLION


def eventbridge_usd_per_million() -> float:
    """Reference: EventBridge's charge just to route each event (one custom event, under 64 KB)."""
    return prices.EVENTBRIDGE_EVENT.usd * prices.MILLION


@dataclass(frozen=True)
class Budget:
    """Issue 12's request budget of one worker delivery, measured."""

    case: str
    read_requests: int
    write_units: float  # index writes included
    requests: int
    target: str
    met: bool


_READS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")


def _worker_calls(meter: Meter) -> list[Call]:
    return [c for c in meter.select("dynamodb") if (c.tag or "").startswith("WorkerFunction")]


def budgets(steps: tuple[int, ...] = (1, 5)) -> list[Budget]:
    """A first delivery of a k-step single-event run (target: 0 reads, <= k + 2 write units with index
    writes) and a duplicate delivery of the finished run (target: 1 request)."""
    found = []
    for k in steps:
        shape = Shape(1, k, False)
        with tempfile.TemporaryDirectory() as tmp, aws_in_process():
            meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
            with MeteredStack(
                app(), Path(tmp), meter, polos_handlers, app_target=APP_TARGET, options=OPTIONS
            ) as stack:
                stack.publish(shape.topic, [sample_event(0)])
                stack.drain(shape.workflow_ids())
                meter.reset()
                stack.publish(shape.topic, [sample_event(1)])
                stack.drain(shape.workflow_ids())
                first = _worker_calls(meter)
                reads = sum(1 for c in first if c.operation in _READS)
                units = sum(c.write_units for c in first)
                found.append(
                    Budget(
                        f"first delivery, {k}-step single-event run",
                        reads,
                        units,
                        len(first),
                        f"0 reads, <= {k + 2} WRU",
                        reads == 0 and units <= k + 2,
                    )
                )
                meter.reset()
                stack.invoke_again("WorkerFunction")
                again = _worker_calls(meter)
                found.append(
                    Budget(
                        f"duplicate of a finished {k}-step run",
                        sum(1 for c in again if c.operation in _READS),
                        sum(c.write_units for c in again),
                        len(again),
                        "1 request",
                        len(again) == 1,
                    )
                )
    return found

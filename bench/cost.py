"""Cost per million events: the real handlers (and the two baselines) on moto, every request counted.

A scenario publishes ``events`` events to one topic, ``per_request`` per HTTP request, then drains the
subscribers' queues through the event source mapping model (so batches are full: a busy steady state).
One warm-up event runs first and is not counted (cold starts are amortised away). The bill: HTTP API
requests (512 KB increments), Lambda invocations and GB-seconds (see ``bench.stack.LambdaCall``), SQS
requests (64 KB chunks; the mapping's ReceiveMessage per delivered batch and DeleteMessageBatch
included; empty polls are per queue, not per event, and are priced separately), DynamoDB read/write units.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from bench import prices
from bench.baselines import NaiveSystem, PowertoolsSystem
from bench.meter import Call, Meter
from bench.stack import Handlers, MeteredStack, Usage, aws_in_process, polos_handlers
from bench.workload import APP_TARGET, SHAPES, Shape, app, sample_event
from infra.local.stack import StackOptions
from infra.model import AppModel

SYSTEMS = ("polos", "powertools", "naive")
PER_REQUEST = (1, 10, 100)


@dataclass(frozen=True)
class Scenario:
    per_request: int
    shape: Shape

    @property
    def label(self) -> str:
        mode = "batch(10)" if self.shape.batch else "single"
        return f"{self.per_request}/req, {self.shape.subscribers} sub, {self.shape.steps}-step, {mode}"


SCENARIOS: tuple[Scenario, ...] = tuple(Scenario(n, shape) for n in PER_REQUEST for shape in SHAPES)
TARGET = Scenario(10, Shape(1, 1, False))
SMOKE_SCENARIOS = (TARGET, Scenario(10, Shape(3, 5, True)))
TARGET_USD_PER_MILLION = 3.00
# A run's lease is the visibility timeout less a second: long enough that a slow machine never lets one
# lapse mid-run (which would leave records for redelivery and bill them twice).
OPTIONS = StackOptions(visibility_timeout=900)
TARGET_VS_POWERTOOLS = 0.5


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
    write_units: float
    idle_receives: int
    operations: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, system: str, scenario: Scenario, events: int, calls: list[Call], usage: Usage) -> Bill:
        billed = [c for c in calls if not c.empty]
        ddb = [c for c in billed if c.service == "dynamodb"]
        return cls(
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
            idle_receives=len(calls) - len(billed),
            operations=Counter(f"{c.service}.{c.operation}" for c in billed),
        )

    @property
    def lambda_invocations(self) -> int:
        return sum(self.invocations.values())

    def per_event(self, value: float) -> float:
        return value / self.events

    def usd(self) -> dict[str, float]:
        """Dollars of this run by service."""
        return {
            "HTTP API": self.http_requests * prices.HTTP_API_REQUEST.usd,
            "Lambda": self.lambda_invocations * prices.LAMBDA_REQUEST.usd
            + self.gb_seconds * prices.LAMBDA_GB_SECOND_ARM.usd,
            "SQS": self.sqs_requests * prices.SQS_REQUEST.usd,
            "DynamoDB": self.write_units * prices.DYNAMODB_WRITE_UNIT.usd
            + self.read_units * prices.DYNAMODB_READ_UNIT.usd,
        }

    def usd_per_million(self) -> float:
        return sum(self.usd().values()) / self.events * prices.MILLION


def _powertools_handlers(model: AppModel) -> Handlers:
    system = PowertoolsSystem()
    return Handlers(api=system.api, worker=system.worker)


def _naive_handlers(model: AppModel) -> Handlers:
    system = NaiveSystem()
    return Handlers(api=system.api, worker=system.worker)


HANDLERS: dict[str, Callable[[AppModel], Handlers]] = {
    "polos": polos_handlers,
    "powertools": _powertools_handlers,
    "naive": _naive_handlers,
}


def run(system: str, scenario: Scenario, events: int = 100) -> Bill:
    """Publish ``events`` events (rounded up to whole requests) and bill everything until they ran."""
    requests = -(-events // scenario.per_request)
    total = requests * scenario.per_request
    topic, workflow_ids = scenario.shape.topic, scenario.shape.workflow_ids()
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        with MeteredStack(
            app(), Path(tmp), meter, HANDLERS[system], app_target=APP_TARGET, options=OPTIONS
        ) as stack:
            stack.publish(topic, [sample_event(0)])  # warm-up, not billed
            stack.drain(workflow_ids)
            stack.reset_usage()
            for r in range(requests):
                stack.publish(
                    topic,
                    [sample_event(1 + r * scenario.per_request + i) for i in range(scenario.per_request)],
                )
            delivered = stack.drain(workflow_ids)
            expected = total * len(workflow_ids)
            if delivered != expected:
                raise RuntimeError(f"{system} {scenario.label}: {delivered} deliveries, expected {expected}")
            return Bill.of(system, scenario, total, list(meter.calls), stack.usage)


def durable_functions_usd_per_million(shape: Shape) -> float:
    """Reference: Lambda durable functions' operation charge alone (one operation per step per run)."""
    runs_per_event = shape.subscribers / (10 if shape.batch else 1)
    return runs_per_event * shape.steps * prices.DURABLE_OPERATION.usd * prices.MILLION


def eventbridge_usd_per_million() -> float:
    """Reference: EventBridge's charge just to route each event (one custom event, under 64 KB)."""
    return prices.EVENTBRIDGE_EVENT.usd * prices.MILLION

"""The monthly bill of a deployment apart from its events: what it is billed whatever the traffic, per line.

- **SQS event source mapping polling**, per mapped queue: Lambda's pollers long-poll an empty queue around
  the clock and each empty ``ReceiveMessage`` is billed to you (``prices.esm_idle_receives_per_month``).
  An upper bound at any traffic: a poll that returns messages replaces an empty one and is billed per event.
- **CloudWatch custom metrics**: one metric per name and combination of dimension values that the handlers'
  EMF documents actually emitted (``bench.logs.emf_metrics``), billed per month (prorated by the hour: a
  metric emitted at least once an hour is a whole metric-month); none while idle unless an idle sweep emits.
- **The timers function**: EventBridge Scheduler invokes it once a minute; each sweep is metered on the
  stack (Lambda request and duration, its DynamoDB reads, its log lines), times the sweeps of a month.
- **EventBridge Scheduler**: the timers schedule's invocations (its 14M free a month not counted).
- **KMS**: the tables' encryption key. An AWS owned key (DynamoDB's default) bills nothing; an AWS managed
  key (``SSEEnabled: true``) bills KMS requests: DynamoDB asks KMS for a table's key again after 5 minutes
  without use, per caller, so up to 12 an hour per table and function role. The queues' SSE-SQS uses
  SQS-owned keys, not KMS: no KMS request is made or billed
  (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-server-side-encryption.html).
- **Dead-letter queues**: SQS bills requests, not stored messages: a DLQ costs nothing while it holds
  messages (https://aws.amazon.com/sqs/pricing/ prices requests and data transfer only); its messages
  expire after the queue's retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.logs import LogVolume
from infra.metering import prices
from infra.metering.meter import Call
from infra.metering.pricing import usd_by_service
from infra.model import AppModel

if TYPE_CHECKING:
    from bench.stack import LambdaCall

SWEEPS_PER_MONTH = prices.SECONDS_PER_MONTH // 60  # rate(1 minute)
HOURS_PER_MONTH = 730
KMS_KEY_REUSE_MINUTES = 5  # DynamoDB's cache of a table key per caller
VOLUMES = (0, 1_000_000, 10_000_000, 100_000_000)  # events a month the bill is printed at
HEADLINE_VOLUME = 10_000_000


@dataclass(frozen=True)
class FixedLine:
    """One line of the monthly bill that does not grow with events."""

    name: str
    usd_per_month: float
    how: str


def polling(queues: int) -> FixedLine:
    receives = prices.esm_idle_receives_per_month()
    return FixedLine(
        f"SQS event source mapping polling ({queues} mapped queue{'s' if queues != 1 else ''})",
        queues * receives * prices.SQS_REQUEST.usd,
        f"{prices.ESM_IDLE_POLLERS} pollers x one {prices.ESM_LONG_POLL_SECONDS} s long poll = "
        f"{receives:,} empty receives per queue-month",
    )


def custom_metrics(emitted: Iterable[str]) -> FixedLine:
    names = sorted(set(emitted))
    shown = ", ".join(name.split("|", 1)[1] for name in names[:12]) + (" ..." if len(names) > 12 else "")
    return FixedLine(
        f"CloudWatch custom metrics ({len(names)})",
        len(names) * prices.CLOUDWATCH_CUSTOM_METRIC.usd,
        f"name|dimensions as emitted: {shown or 'none'}",
    )


@dataclass(frozen=True)
class Sweep:
    """One metered invocation of the timers function."""

    lambda_call: LambdaCall
    calls: Sequence[Call]

    @property
    def usd(self) -> float:
        call = self.lambda_call
        log_bytes = call.log.billed_bytes
        return (
            prices.LAMBDA_REQUEST.usd
            + call.gb_seconds * prices.LAMBDA_GB_SECOND_ARM.usd
            + sum(usd_by_service(self.calls).values())
            + log_bytes * prices.CLOUDWATCH_LOGS_INGESTION.usd
        )

    @property
    def log(self) -> LogVolume:
        return self.lambda_call.log


def timers(sweep: Sweep) -> FixedLine:
    reads = sum(1 for call in sweep.calls if call.service == "dynamodb")
    return FixedLine(
        "Timers function (each minute: Lambda, DynamoDB, logs)",
        sweep.usd * SWEEPS_PER_MONTH,
        f"{SWEEPS_PER_MONTH:,} sweeps x ${sweep.usd:.8f} (measured idle sweep: {reads} DynamoDB requests, "
        f"{sweep.lambda_call.billed_ms} ms at {sweep.lambda_call.memory_mb} MB, "
        f"{sweep.log.billed_bytes} log bytes)",
    )


def scheduler() -> FixedLine:
    return FixedLine(
        "EventBridge Scheduler (the timers schedule)",
        SWEEPS_PER_MONTH * prices.SCHEDULER_INVOCATION.usd,
        f"{SWEEPS_PER_MONTH:,} invocations at list price (free within the 14M a month free tier)",
    )


def kms(managed_key_tables: int, roles: int) -> FixedLine:
    requests = managed_key_tables * roles * (60 // KMS_KEY_REUSE_MINUTES) * HOURS_PER_MONTH
    how = (
        "tables encrypted with DynamoDB's AWS owned key: no KMS charge"
        if not managed_key_tables
        else f"AWS managed key: up to {requests:,} requests a month ({managed_key_tables} tables x {roles} "
        f"roles x one every {KMS_KEY_REUSE_MINUTES} min)"
    )
    return FixedLine("KMS (table encryption keys)", requests * prices.KMS_REQUEST.usd, how)


def dead_letter_queues(queues: int) -> FixedLine:
    return FixedLine(
        f"Dead-letter queues ({queues})", 0.0, "SQS bills requests, not stored messages (none while idle)"
    )


def managed_key_tables(model: AppModel, app_module: str) -> int:
    """Tables the rendered template encrypts with the AWS managed key (``SSEEnabled: true``)."""
    from infra.template import render_template

    resources = render_template(model, app_module)["Resources"]
    return sum(
        1
        for resource in resources.values()
        if resource["Type"] == "AWS::DynamoDB::Table"
        and resource["Properties"].get("SSESpecification", {}).get("SSEEnabled") in (True, "true")
    )


def polos_lines(
    queues: int, model: AppModel, app_module: str, metrics: Iterable[str], sweep: Sweep
) -> list[FixedLine]:
    """Polos's monthly lines for a deployment of ``queues`` mapped queues (the template of ``model``)."""
    return [
        polling(queues),
        custom_metrics(metrics),
        timers(sweep),
        scheduler(),
        kms(managed_key_tables(model, app_module), len(model.functions)),
        dead_letter_queues(queues),
    ]


def baseline_lines(queues: int, metrics: Iterable[str]) -> list[FixedLine]:
    """A hand-written baseline's monthly lines: its queues polled, its metrics; default table encryption,
    no timers (it has no durable waits)."""
    return [polling(queues), custom_metrics(metrics), kms(0, 0), dead_letter_queues(queues)]


def total(lines: Iterable[FixedLine]) -> float:
    return sum(line.usd_per_month for line in lines)

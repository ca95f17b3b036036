"""``python -m bench --only idle``: the example app's stack with no events, its monthly bill line by line.

The app is deployed on the metered local stack with Polos's own handlers; nothing is published. The timers
function is invoked once as EventBridge Scheduler invokes it each minute (metered: its requests, duration,
log lines and any metric it emits), and :mod:`bench.fixed` turns that and the app's model (its mapped
queues, its tables' encryption) into the month's lines. Target (issue 26): at most
:data:`POLLING_TARGET_PER_QUEUE` per mapped queue for the polling, :data:`OTHER_TARGET` for the rest.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from polos.app import App

from bench import fixed
from bench.fixed import FixedLine
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from infra.metering import prices
from infra.metering.meter import Meter

POLLING_TARGET_PER_QUEUE = 0.30
OTHER_TARGET = 1.00


@dataclass(frozen=True)
class IdleBill:
    """An app's stack at 0 events: its mapped queues and the month's lines."""

    queues: int
    lines: list[FixedLine]

    @property
    def polling(self) -> FixedLine:
        (line,) = (line for line in self.lines if line.name.startswith("SQS event source mapping polling"))
        return line

    @property
    def other(self) -> float:
        return fixed.total(self.lines) - self.polling.usd_per_month

    @property
    def polling_per_queue(self) -> float:
        return self.polling.usd_per_month / self.queues if self.queues else 0.0

    @property
    def passed(self) -> bool:
        return self.polling_per_queue <= POLLING_TARGET_PER_QUEUE and self.other <= OTHER_TARGET


def measure(app: App, app_target: str) -> IdleBill:
    """``app`` deployed and left idle for a month, by the metered timers sweep."""
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        with MeteredStack(app, Path(tmp), meter, polos_handlers, app_target=app_target) as stack:
            stack.reset_usage()  # creating the stack (its API key) is not the idle month's
            sweep = fixed.Sweep(*stack.sweep_timers())
            queues = len(stack.model.queues)
            lines = fixed.polos_lines(queues, stack.model, app_target, sweep.log.metrics, sweep)
            return IdleBill(queues, lines)


def example_app() -> tuple[App, str]:
    """The example app (``functions/workflows``) and the name the worker loads it by."""
    from infra.local.stack import resolve_app

    return resolve_app(None)


def report(bill: IdleBill, command: str) -> str:
    width = max(len(line.name) for line in bill.lines)
    out = [f"Example app idle (0 events), {bill.queues} mapped queues, per month:"]
    out += [f"  {line.name.ljust(width)}  ${line.usd_per_month:8.4f}  {line.how}" for line in bill.lines]
    out.append(f"  {'total'.ljust(width)}  ${fixed.total(bill.lines):8.4f}")
    out.append(
        f"{'PASS' if bill.polling_per_queue <= POLLING_TARGET_PER_QUEUE else 'FAIL'}: polling "
        f"${bill.polling_per_queue:.4f} per mapped queue (target <= ${POLLING_TARGET_PER_QUEUE:.2f})"
    )
    out.append(
        f"{'PASS' if bill.other <= OTHER_TARGET else 'FAIL'}: everything else ${bill.other:.4f} "
        f"(target <= ${OTHER_TARGET:.2f})"
    )
    out.append(f"({command}; prices as listed on {prices.PRICES_DATE}, sources in docs/benchmarks.md)")
    return "\n".join(out)

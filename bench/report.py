"""The benchmark table (every benchmark in one, PASS/FAIL beside each target) and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench import prices
from bench.coldstart import BASELINE, ImportCost, ImportTime
from bench.cost import (
    TARGET,
    TARGET_USD_PER_MILLION,
    TARGET_VS_POWERTOOLS,
    Bill,
    durable_functions_usd_per_million,
    eventbridge_usd_per_million,
)
from bench.stack import ASSUMED_AWS_CALL_MS
from bench.throughput import Throughput
from infra.model import FUNCTIONS

IMPORT_TARGET_RATIO = 1.3
THROUGHPUT_TARGET_RATIO = 0.8  # of the raw replay
THROUGHPUT_TARGET_EVENTS = 20.0  # events/s through `polos dev`
HISTORY_TARGET_RATIO = 0.8  # of the rate at start, with the history stored
COLUMNS = (
    "Benchmark",
    "Case",
    "System",
    "HTTP req/evt",
    "Lambda inv/evt",
    "SQS req/evt",
    "DDB WCU/evt",
    "DDB RCU/evt",
    "Result",
    "Relative",
    "Target",
    "Verdict",
)


@dataclass(frozen=True)
class Row:
    benchmark: str
    case: str
    system: str
    per_event: tuple[str, str, str, str, str] = ("", "", "", "", "")
    result: str = ""
    relative: str = ""
    target: str = ""
    verdict: str = ""

    def cells(self) -> list[str]:
        return [
            self.benchmark,
            self.case,
            self.system,
            *self.per_event,
            self.result,
            self.relative,
            self.target,
            self.verdict,
        ]


@dataclass
class Results:
    """Everything one ``python -m bench`` run measured."""

    command: str
    bills: list[Bill] = field(default_factory=list)
    imports: list[ImportTime] = field(default_factory=list)
    import_profiles: dict[str, list[ImportCost]] = field(default_factory=dict)
    throughput: Throughput | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _figure(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


def cost_rows(bills: Sequence[Bill]) -> list[Row]:
    powertools = {bill.scenario: bill for bill in bills if bill.system == "powertools"}
    rows = []
    for bill in bills:
        per_event = (
            _figure(bill.per_event(bill.http_requests)),
            _figure(bill.per_event(bill.lambda_invocations)),
            _figure(bill.per_event(bill.sqs_requests)),
            _figure(bill.per_event(bill.write_units)),
            _figure(bill.per_event(bill.read_units)),
        )
        usd = bill.usd_per_million()
        relative = target = verdict = ""
        baseline = powertools.get(bill.scenario)
        if bill.system != "powertools" and baseline is not None:
            ratio = usd / baseline.usd_per_million()
            relative = f"{ratio:.2f}x Powertools"
            if bill.system == "polos" and bill.scenario == TARGET:
                target = f"<= ${TARGET_USD_PER_MILLION:.2f} and <= {TARGET_VS_POWERTOOLS}x Powertools"
                verdict = _verdict(usd <= TARGET_USD_PER_MILLION and ratio <= TARGET_VS_POWERTOOLS)
        rows.append(
            Row(
                "cost",
                bill.scenario.label,
                bill.system,
                per_event,
                f"${usd:.2f} /M events",
                relative,
                target,
                verdict,
            )
        )
    return rows


def reference_rows(bills: Sequence[Bill]) -> list[Row]:
    shapes = sorted({bill.scenario.shape for bill in bills}, key=lambda s: (s.subscribers, s.steps, s.batch))
    rows = [
        Row(
            "reference",
            "any scenario: routing only",
            "EventBridge",
            result=f"${eventbridge_usd_per_million():.2f} /M events",
        )
    ]
    for shape in shapes:
        mode = "batch(10)" if shape.batch else "single"
        rows.append(
            Row(
                "reference",
                f"{shape.subscribers} sub, {shape.steps}-step, {mode}: operations only",
                "Lambda durable functions",
                result=f"${durable_functions_usd_per_million(shape):.2f} /M events",
            )
        )
    return rows


def import_rows(imports: Sequence[ImportTime]) -> list[Row]:
    base = next((t for t in imports if t.target.label == BASELINE), None)
    rows = []
    for timing in imports:
        ms = f"{timing.median * 1000:.0f} ms (median of {len(timing.samples)})"
        if timing.target.label == BASELINE or base is None:
            rows.append(Row("cold start", "import boto3", "-", result=ms))
            continue
        ratio = timing.median / base.median
        rows.append(
            Row(
                "cold start",
                f"import {timing.target.label}",
                "Polos",
                result=ms,
                relative=f"{ratio:.2f}x boto3",
                target=f"<= {IMPORT_TARGET_RATIO}x boto3",
                verdict=_verdict(ratio <= IMPORT_TARGET_RATIO),
            )
        )
    return rows


def throughput_rows(result: Throughput | None) -> list[Row]:
    if result is None:
        return []
    ratio = result.events_per_second / result.limit_events_per_second
    case = f"{result.events} events, 1-step, 3 subscribers, {result.publishers} publishers"
    rate = result.events_per_second
    rows = [
        Row("throughput", case, "boto3 limit", result=f"{result.limit_events_per_second:.1f} events/s"),
        Row(
            "throughput",
            case,
            "Polos local stack",
            result=f"{rate:.1f} events/s",
            target=f">= {THROUGHPUT_TARGET_EVENTS:.0f} events/s",
            verdict=_verdict(rate >= THROUGHPUT_TARGET_EVENTS),
        ),
        Row(
            "throughput",
            case,
            "Polos local stack",
            result=f"{rate:.1f} events/s",
            relative=f"{ratio:.2f}x limit",
            target=f">= {THROUGHPUT_TARGET_RATIO}x limit",
            verdict=_verdict(ratio >= THROUGHPUT_TARGET_RATIO),
        ),
    ]
    if result.history_seconds:
        later = result.history_events_per_second
        rows.append(
            Row(
                "throughput",
                f"{case}, {result.history:,} events stored",
                "Polos local stack",
                result=f"{later:.1f} events/s",
                relative=f"{later / rate:.2f}x at start",
                target=f">= {HISTORY_TARGET_RATIO}x at start",
                verdict=_verdict(later >= HISTORY_TARGET_RATIO * rate),
            )
        )
    return rows


def rows(results: Results) -> list[Row]:
    return (
        cost_rows(results.bills)
        + reference_rows(results.bills)
        + import_rows(results.imports)
        + throughput_rows(results.throughput)
    )


def table(all_rows: Sequence[Row]) -> str:
    """A Markdown table, padded so it also reads as plain text."""
    grid = [list(COLUMNS)] + [row.cells() for row in all_rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(grid[0]), rule, *(line(cells) for cells in grid[1:])])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.python_implementation()} {sys.version.split()[0]}, "
        f"{platform.system()} {platform.release()}"
    )


def markdown(results: Results) -> str:
    """The whole of docs/benchmarks.md."""
    memory = ", ".join(f"{spec.logical_id} {spec.memory_mb} MB" for spec in FUNCTIONS)
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `{results.command}` on {results.started:%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "",
        table(rows(results)),
        "",
        "## How to read it",
        "",
        "- **cost**: the real handlers (`functions/api`, `functions/authorizer`, `functions/worker`) and the",
        "  two baselines run on moto in-process; every AWS request is counted with botocore event hooks and",
        "  DynamoDB item sizes are turned into read/write units by DynamoDB's size rules (attribute names",
        "  + values; writes ceil(KB) of the larger of before and after; reads ceil(4 KB), half when",
        "  eventually consistent; transactions x2; a failed condition costs the existing item's size).",
        "  Per event = per published event, all subscribers together. `N/req` = events per publish",
        "  request; `sub` = subscribed workflows; `batch(10)` = batch workflows of `batch_size=10`.",
        "- Publishing carries no `Idempotency-Key`; events are ~250 bytes of JSON. Queues are drained",
        "  after publishing, so batches are full (a busy steady state); one warm-up event per scenario is",
        "  not counted.",
        f"- Lambda: arm64; {memory} (the template's sizes).",
        "  Billed duration = own compute measured here (wall time minus the time AWS requests were in",
        f"  flight) + {ASSUMED_AWS_CALL_MS:g} ms per wave of AWS requests (requests that ran concurrently",
        "  count once), an assumed in-region round trip: moto's speed says nothing about AWS.",
        "  Invocations: the API per request, the authorizer at most once per 300 s per key (its result",
        "  cache, as in the template), the worker per delivered batch.",
        "- SQS: billed per started 64 KB of each request. The event source mapping's requests are billed",
        "  to you and are counted: one ReceiveMessage per delivered batch and its DeleteMessageBatch.",
        "  Empty polls are per queue, not per event, and are left out of the table. Assumed:",
        f"  {prices.ESM_IDLE_POLLERS} pollers x {prices.ESM_LONG_POLL_SECONDS} s long polls per idle queue =",
        f"  {prices.esm_idle_receives_per_month():,} receives = "
        f"${prices.esm_idle_receives_per_month() * prices.SQS_REQUEST.usd:.2f} per queue per month.",
        "- Baselines (`bench/baselines.py`): *powertools* = hand-written publisher (BatchWriteItem +",
        "  SendMessageBatch) and worker (Powertools `BatchProcessor`, `@idempotent_function` on each",
        "  step: a conditional PutItem and an UpdateItem per step). *naive* = one PutItem and one",
        "  SendMessage per event per subscriber, steps called without a journal. Neither has an",
        "  authorizer, sequence ids, publish idempotency or batch membership: they do less than Polos.",
        "- References: EventBridge's price just to route an event; Lambda durable functions' operation",
        "  charge alone, one operation per step per run (execution start, data written and retained not",
        "  counted: a lower bound), from the price table below.",
        "- **cold start**: fresh-process import time of each handler module with `functions/<fn>`,",
        "  `functions/` and `shared/` on `sys.path` and the functions' environment",
        "  (`bench/coldstart.py`), next to `import boto3` alone; samples interleaved, median.",
        "- **throughput**: events published over HTTP to `polos dev`'s stack (moto server, 3 subscribed",
        "  1-step workflows) until every run completed, next to the AWS requests that run made, replayed",
        "  with boto3 on fresh copies of the tables and queues on the same moto server, one thread per",
        "  recording thread (`bench/throughput.py`). Then the tables are grown to 10,000 stored events",
        "  (every event, run and step copied under new keys) and the same events are published and timed",
        "  again. moto's own DynamoDB `Query` reads and sorts the whole table; the local stack installs a",
        "  partition-indexed one (`infra/local/moto_query.py`, proven equal by `make moto-parity`).",
        "",
        "## Prices (US East, N. Virginia)",
        "",
        "| Item | USD | Per | Source |",
        "|---|---|---|---|",
        *(f"| {p.name} | {p.usd:.10f} | {p.unit} | {p.source} |" for p in prices.ALL),
        "",
    ]
    if results.import_profiles:
        parts += ["## Import profile (`python -X importtime`, cumulative ms, up to two levels deep)", ""]
        for label, costs in results.import_profiles.items():
            listed = ", ".join(f"`{c.module}` {c.cumulative_us / 1000:.0f}" for c in costs)
            parts.append(f"- `{label}`: {listed}")
        parts.append("")
    return "\n".join(parts)

"""The benchmark table (every benchmark in one, PASS/FAIL beside each target) and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench import idle, monthly, slots, waits
from bench.coldstart import BASELINE, NO_BYTECODE, ImportCost, ImportTime
from bench.cost import (
    RATIO_TARGETS,
    TARGET,
    Bill,
    Budget,
    durable_functions_usd_per_million,
    eventbridge_usd_per_million,
)
from bench.idle import IdleBill
from bench.logs import EVENT_OVERHEAD_BYTES
from bench.memory import MemoryUse
from bench.stack import ASSUMED_AWS_CALL_MS, FULL_VCPU_MB
from bench.storage import ITEM_OVERHEAD_BYTES
from bench.tables import grid as _grid
from bench.throughput import Throughput
from bench.waits import EventWaitCost, PaymentCapacity, PublishCost, WaitCost
from infra.metering import capacity, prices
from infra.metering.capacity import KeyLoad
from infra.model import FUNCTIONS

# Issue 12: fresh-process import of each handler as a ratio to `import boto3` in the same run.
IMPORT_TARGET_RATIOS = {
    "functions/api/app.py": 1.8,
    "functions/worker/app.py": 1.6,
}
THROUGHPUT_TARGET_RATIO = 0.8  # of the raw replay
THROUGHPUT_TARGET_EVENTS = 20.0  # events/s through `polos dev`
HISTORY_TARGET_RATIO = 0.8  # of the rate at start, with the history stored
# Issue 14: a publish to a topic without waiters adds no request; a matched wait_for_event at most 4.
NO_WAITERS_TARGET_REQUESTS = 0
MATCHED_WAIT_TARGET_REQUESTS = 4
# Issue 22: until the waits of a topic's waiters end (their marks lapse), a publish reads one partition of
# the waiter index per data key they are indexed by: one empty Query here.
DRAINED_TARGET_REQUESTS = 1
COLUMNS = (
    "Benchmark",
    "Case",
    "System",
    "HTTP req/evt",
    "Lambda inv/evt",
    "SQS req/evt",
    "DDB WRU/evt (index)",
    "DDB RRU/evt",
    "Log B/evt",
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
    per_event: tuple[str, str, str, str, str, str] = ("", "", "", "", "", "")
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
    first_calls: list[ImportTime] = field(default_factory=list)
    imports_without_bytecode: list[ImportTime] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    memory: list[MemoryUse] = field(default_factory=list)
    import_profiles: dict[str, list[ImportCost]] = field(default_factory=dict)
    throughput: Throughput | None = None
    wait: WaitCost | None = None
    event_wait: EventWaitCost | None = None
    payment: PaymentCapacity | None = None
    capacity: list[KeyLoad] = field(default_factory=list)
    idle: IdleBill | None = None
    logs_before: float | None = None  # the headline's logs $/M with a run's completion at INFO
    five_step_before: float | None = None  # the 5-step's $/M all in with each step in an item of its own
    slots: slots.SlotCost | None = None
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
            f"{_figure(bill.per_event(bill.write_units))} "
            f"({_figure(bill.per_event(bill.index_write_units))})",
            _figure(bill.per_event(bill.read_units)),
            f"{bill.per_event(bill.log_bytes):.0f}",
        )
        usd = bill.usd_per_million()
        relative = target = verdict = ""
        baseline = powertools.get(bill.scenario)
        ratio = bill.all_in_per_million() / baseline.all_in_per_million() if baseline is not None else None
        if bill.system != "powertools" and ratio is not None and baseline is not None:
            relative = f"{ratio:.2f}x baseline all in ({usd / baseline.usd_per_million():.2f}x per event)"
        if bill.system == "polos" and bill.scenario in RATIO_TARGETS and ratio is not None:
            target = f"<= {RATIO_TARGETS[bill.scenario]}x baseline"
            verdict = _verdict(ratio <= RATIO_TARGETS[bill.scenario])
        rows.append(
            Row(
                "cost",
                bill.scenario.label,
                bill.system,
                per_event,
                f"${usd:.2f} /M events; ${bill.all_in_per_million():.2f} /M all in at 10M/month",
                relative,
                target,
                verdict,
            )
        )
    return rows


def reference_rows(bills: Sequence[Bill]) -> list[Row]:
    if not bills:  # e.g. `python -m bench --only waits`
        return []
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


def import_rows(imports: Sequence[ImportTime], first_calls: Sequence[ImportTime] = ()) -> list[Row]:
    rows = []
    for timings, what in ((imports, "import"), (first_calls, "import + 1st call")):
        base = next((t for t in timings if t.target.label == BASELINE), None)
        for timing in timings:
            ms = f"{timing.median * 1000:.0f} ms (median of {len(timing.samples)})"
            if timing.target.label == BASELINE or base is None:
                rows.append(Row("cold start", f"{what}: boto3", "-", result=ms))
                continue
            ratio = timing.median / base.median
            goal = IMPORT_TARGET_RATIOS.get(timing.target.label) if what == "import" else None
            rows.append(
                Row(
                    "cold start",
                    f"{what}: {timing.target.label.removesuffix(' + 1st call')}",
                    "Polos",
                    result=ms,
                    relative=f"{ratio:.2f}x boto3",
                    target="" if goal is None else f"<= {goal}x boto3",
                    verdict="" if goal is None else _verdict(ratio <= goal),
                )
            )
    return rows


def no_bytecode_rows(timings: Sequence[ImportTime], imports: Sequence[ImportTime]) -> list[Row]:
    """The handlers imported with every module of the layer and the function compiled from source, as each
    cold start did before the build shipped bytecode, next to boto3 in the same run and to the import with
    bytecode (``imports``)."""
    base = next((t for t in timings if t.target.label == BASELINE), None)
    compiled = {t.target.label: t.median for t in imports}
    rows = []
    for timing in timings:
        if timing.target.label == BASELINE or base is None:
            continue
        label = timing.target.label.removesuffix(NO_BYTECODE)
        relative = [f"{timing.median / base.median:.2f}x boto3"]
        if label in compiled:
            relative.append(f"{timing.median / compiled[label]:.2f}x with bytecode")
        rows.append(
            Row(
                "cold start",
                f"import, no bytecode (as Lambda ran the build before): {label}",
                "Polos (before)",
                result=f"{timing.median * 1000:.0f} ms (median of {len(timing.samples)})",
                relative=", ".join(relative),
            )
        )
    return rows


def budget_rows(budgets: Sequence[Budget]) -> list[Row]:
    return [
        Row(
            "request budget",
            budget.case,
            "Polos",
            result=f"{budget.requests} requests, {budget.read_requests} reads, "
            f"{_figure(budget.write_units)} WRU",
            target=budget.target,
            verdict=_verdict(budget.met),
        )
        for budget in budgets
    ]


def memory_rows(uses: Sequence[MemoryUse]) -> list[Row]:
    return [
        Row(
            "memory",
            f"{use.function}: {use.case}",
            "Polos",
            result=f"{use.estimate_mb:.0f} MB "
            f"(import {use.import_mb:.0f} + call {use.invocation_peak_mb:.0f})",
            relative=f"{use.estimate_mb / use.memory_mb:.2f}x of {use.memory_mb} MB",
            target=f"<= {use.limit_mb:.0f} MB",
            verdict=_verdict(use.met),
        )
        for use in uses
    ]


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


def slot_rows(cost: slots.SlotCost | None) -> list[Row]:
    """The headline run on a queue whose limit never binds, next to the headline: what its slot adds."""
    if cost is None:
        return []
    case = f"headline shape on a queue of limit {slots.UNBOUND_LIMIT} (not binding); a queued run waiting 1 h"
    return [
        Row(
            "queues",
            case,
            "Polos",
            result=f"+{cost.extra_write_units:g} WRU/run (take + free), "
            f"${cost.usd_per_million():.2f}/M runs; {cost.queued_requests} requests while queued",
            relative=f"{cost.extra_read_units:g} RRU, {cost.extra_requests:g} requests/run",
            target=f"<= {slots.TARGET_EXTRA_WRITE_UNITS:g} WRU/run; 0 while queued",
            verdict=_verdict(
                cost.extra_write_units <= slots.TARGET_EXTRA_WRITE_UNITS and cost.queued_requests == 0
            ),
        ),
        Row(
            "queues",
            "strict_order=True: start order ahead of delivery (the registry: publish + admission)",
            "Polos",
            result=f"+{cost.order_write_units:g} WRU/event at {slots.PER_REQUEST} events/request, one key; "
            f"+{cost.order_write_units_keyed:g} with a key per event",
            relative=f"{cost.order_read_units:g} RRU/event; take + free + order: "
            f"{cost.extra_write_units + cost.order_write_units:g} WRU/run",
        ),
    ]


def wait_rows(wait: WaitCost | None) -> list[Row]:
    if wait is None:
        return []
    case = "1-step run + one 1-hour wait"
    usd = wait.usd_per_million()
    return [
        Row(
            "waits",
            case,
            "Polos",
            result=f"+{wait.requests} requests, ${usd:.2f} per million waits; $0 per second waited",
            relative=f"{wait.write_units:g} WRU, {wait.read_units:g} RRU, {wait.sqs_requests} SQS",
        ),
        Row(
            "waits",
            case,
            "Lambda durable functions",
            result=f"${prices.DURABLE_OPERATION.usd * prices.MILLION:.2f} per million waits (1 operation)",
            relative=f"{usd / (prices.DURABLE_OPERATION.usd * prices.MILLION):.2f}x" if usd else "",
        ),
        Row(
            "waits",
            case,
            "Step Functions Standard",
            result=f"${prices.STEP_FUNCTIONS_TRANSITION.usd * prices.MILLION:.2f} per million waits (1 step)",
            relative=f"{usd / (prices.STEP_FUNCTIONS_TRANSITION.usd * prices.MILLION):.2f}x" if usd else "",
        ),
    ]


def _operations(operations: dict[str, int]) -> str:
    return ", ".join(f"{operation} {count}" for operation, count in operations.items()) or "none"


def _no_waiters_row(case: str, publish: PublishCost, baseline: PublishCost) -> Row:
    added = publish.requests - baseline.requests
    return Row(
        "waits",
        case,
        "Polos",
        result=f"{added:+d} requests ({publish.requests} vs {baseline.requests} with the waiter path stubbed "
        f"out: {_operations(dict(publish.operations))}); {publish.waiter_requests} on waiter items",
        relative=f"{_figure(publish.write_units)} WRU, {_figure(publish.read_units)} RRU "
        f"(stubbed: {_figure(baseline.write_units)}, {_figure(baseline.read_units)})",
        target=f"+{NO_WAITERS_TARGET_REQUESTS} requests",
        verdict=_verdict(
            added <= NO_WAITERS_TARGET_REQUESTS
            and publish.waiter_requests == 0
            and publish.operations == baseline.operations
        ),
    )


def event_wait_rows(cost: EventWaitCost | None) -> list[Row]:
    if cost is None:
        return []
    added = cost.added_by_match
    usd = cost.wait.usd_per_million()
    callback = prices.DURABLE_OPERATION.usd * prices.MILLION
    case = "1-step run + one wait_for_event, matched"
    return [
        _no_waiters_row(
            "publish 1 event, topic never waited on", cost.quiet, cost.quiet_without_waiters_path
        ),
        _no_waiters_row(
            "publish 1 event, topic whose waiters are gone", cost.emptied, cost.emptied_without_waiters_path
        ),
        Row(
            "waits",
            "publish 1 event, waiters matched, their waits not ended",
            "Polos",
            result=f"+{cost.drained.requests - cost.quiet.requests} requests: "
            f"{_operations(cost.drained.beyond(cost.quiet))} (an empty waiter partition)",
            relative=f"{_figure(cost.drained.read_units)} RRU (quiet: {_figure(cost.quiet.read_units)})",
            target=f"<= +{DRAINED_TARGET_REQUESTS} request",
            verdict=_verdict(
                cost.drained.requests - cost.quiet.requests <= DRAINED_TARGET_REQUESTS
                and cost.drained.beyond(cost.quiet) == {"dynamodb.Query": DRAINED_TARGET_REQUESTS}
            ),
        ),
        Row(
            "waits",
            "publish 1 event matching a wait_for_event",
            "Polos",
            result=f"+{sum(added.values())} requests beyond the publish: {_operations(added)}",
            relative=f"{cost.matched.requests} vs {cost.quiet.requests} requests on a topic without waiters",
            target=f"<= +{MATCHED_WAIT_TARGET_REQUESTS} requests",
            verdict=_verdict(sum(added.values()) <= MATCHED_WAIT_TARGET_REQUESTS),
        ),
        Row(
            "waits",
            case,
            "Polos",
            result=f"+{cost.wait.requests} requests, ${usd:.2f} per million waits",
            relative=f"{cost.wait.write_units:g} WRU, {cost.wait.read_units:g} RRU, "
            f"{cost.wait.sqs_requests} SQS",
        ),
        Row(
            "waits",
            case,
            "Lambda durable functions",
            result=f"${callback:.2f} per million callbacks (1 operation)",
            relative=f"{usd / callback:.2f}x" if usd else "",
        ),
    ]


def payment_rows(capacity: PaymentCapacity | None) -> list[Row]:
    """The payment pattern's ceiling per topic: each key every event of the topic uses, at AWS's
    per-partition limits, and the registrations' look-back (modelled); the lowest is the sustained rate."""
    if capacity is None:
        return []
    case = "payment pattern: wait_for_event per order, match order_id"
    rows = [
        Row(
            "waits",
            f"{case}; {load.hot}",
            "Polos",
            result=f"{load.ceiling:,.0f} events/s",
            relative=f"{_figure(load.read_units)} RRU, {_figure(load.write_units)} WRU per event",
        )
        for load in capacity.loads
        if load.per_topic
    ]
    rows.append(
        Row(
            "waits",
            f"{case}; look-back while registering (modelled: rate x "
            f"{waits.REGISTRATION_WINDOW_SECONDS * 1000:g} ms events each)",
            "Polos",
            result=f"{capacity.look_back_ceiling():,.0f} events/s",
            relative=f"{_figure(capacity.look_back_units_per_event)} RRU per event looked at",
        )
    )
    sustained = capacity.sustained()
    rows.append(
        Row(
            "waits",
            f"{case}; sustained per topic ({capacity.events} orders metered, "
            f"{waits.PAYMENTS_PER_REQUEST} events of 1 KB per publish)",
            "Polos",
            result=f"{sustained:,.0f} events/s",
            relative=f"{waits.PARTITION_READ_UNITS:,} RCU / {waits.PARTITION_WRITE_UNITS:,} WCU a partition",
            target=f">= {waits.PAYMENT_RATE_TARGET:,} events/s",
            verdict=_verdict(sustained >= waits.PAYMENT_RATE_TARGET),
        )
    )
    return rows


def rows(results: Results) -> list[Row]:
    return (
        cost_rows(results.bills)
        + slot_rows(results.slots)
        + reference_rows(results.bills)
        + import_rows(results.imports, results.first_calls)
        + no_bytecode_rows(results.imports_without_bytecode, results.imports)
        + budget_rows(results.budgets)
        + memory_rows(results.memory)
        + throughput_rows(results.throughput)
        + wait_rows(results.wait)
        + event_wait_rows(results.event_wait)
        + payment_rows(results.payment)
    )


def _headline(results: Results, system: str) -> Bill | None:
    return next((b for b in results.bills if b.system == system and b.scenario == TARGET), None)


def breakdown(results: Results) -> str:
    """The headline's bill line by line, Polos next to the Powertools baseline ($ per million events)."""
    polos, baseline = _headline(results, "polos"), _headline(results, "powertools")
    if polos is None:
        return ""
    total = polos.usd_per_million()
    body = []
    for line in polos.usd_lines():
        usd = polos.line_per_million(line)
        other = "" if baseline is None else f"{baseline.line_per_million(line):.3f}"
        body.append([line, f"{usd:.3f}", f"{usd / total:.0%}", other])
    body.append(
        ["total", f"{total:.3f}", "100%", "" if baseline is None else f"{baseline.usd_per_million():.3f}"]
    )
    return _grid(["Headline: " + TARGET.label, "Polos $/M", "share", "Powertools $/M"], body)


def levers(results: Results) -> str:
    """What each storage lever would still save on the headline, by the meter's numbers (0: built)."""
    polos = _headline(results, "polos")
    if polos is None:
        return ""
    body = [[lever.name, f"{lever.usd_per_million:.3f}", lever.how] for lever in polos.levers]
    return _grid(["Lever", "saves $/M", "counted as"], body)


def _when(results: Results) -> str:
    return f"{results.started:%Y-%m-%d %H:%M}"


def text(results: Results) -> str:
    """What ``make bench`` prints: the table, the headline's breakdown and the levers."""
    parts = (
        table(rows(results)),
        breakdown(results),
        monthly.monthly_table(results.bills),
        monthly.fixed_detail(results.bills),
        monthly.targets_text(results.bills, results.command, _when(results)),
        monthly.lever_table(results.bills, results.logs_before, results.five_step_before),
        levers(results),
        "" if results.idle is None else idle.report(results.idle, results.command),
        capacity_table(results.capacity),
    )
    return "\n\n".join(part for part in parts if part)


def capacity_table(loads: Sequence[KeyLoad]) -> str:
    """Per workload and key class, the busiest key's units per unit of load and the ceiling it implies."""
    if not loads:
        return ""
    header = (
        "Partition-key ceilings (python -m bench --only capacity): at "
        f"{capacity.HEADROOM:.0%} of {capacity.WRITE_LIMIT:,} WCU/s and {capacity.READ_LIMIT:,} RCU/s per key"
    )
    columns = ("workload", "key class", "shared by", "RCU/unit", "WCU/unit", "ceiling", "target")
    cells = [
        (
            load.workload,
            load.key_class.name,
            load.key_class.scope,
            f"{load.read_units:.3f}",
            f"{load.write_units:.3f}",
            capacity.rate(load),
            load.verdict,
        )
        for load in loads
    ]
    return header + "\n\n" + _grid(columns, cells)


def table(all_rows: Sequence[Row]) -> str:
    """A Markdown table, padded so it also reads as plain text."""
    return _grid(COLUMNS, [row.cells() for row in all_rows])


FAIR_BASELINE = (
    "## The fair baseline: what it does and does not guarantee",
    "",
    "`bench/baselines.py` *powertools* is what a competent engineer writes for the same job with",
    "Powertools. The publisher honours the client's `Idempotency-Key` (the workload's client sends one",
    "with every publish, as `PolosClient` does) with `@idempotent` on its handler: a conditional PutItem",
    "before, an UpdateItem with the answer after, kept 24 hours like Polos's key records; the same key",
    "with another body is a `409`. It stores each event (BatchWriteItem), zlib-compressed when that",
    "makes it smaller, and sends it to each subscriber's queue (SendMessageBatch); the worker runs a",
    "delivery's records concurrently (`AsyncBatchProcessor`) and makes each step exactly-once with",
    "`@idempotent_function` (a conditional PutItem before, an UpdateItem after, records kept the same",
    "30 days); it logs the lines Polos logs at the same levels and emits the same three metrics under",
    "the `service` dimension. Like Polos it runs each step once per event and subscriber, survives a",
    "worker crash between steps, answers a replayed publish with its first answer, and reports partial",
    "batch failures. It does not: check API keys; number events per topic (`sequence_id`) or list",
    "them; finish a publish that stopped midway (its key's record refuses retries until the handler's",
    "timeout, then the retry runs again from scratch: new event ids, the first attempt's events stored",
    "and delivered twice); keep a batch run's membership when SQS redelivers in other groupings (its",
    "batch runs again); record runs (status, attempts, results, errors) or list them per workflow",
    "(Polos's runs index); wait durably (timers, events, resumes, children), cancel, or dead-letter a",
    "run with its error. Each target line also prints the ratio to the same baseline ignoring the",
    "key (*powertools, key ignored*), measured in the same run. The",
    "ratios price what Polos guarantees beyond it; none of it is removed from Polos to pass a target.",
)


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
        "## The headline, line by line",
        "",
        breakdown(results),
        "",
        "## The month's bill, all in (issue 26)",
        "",
        monthly.targets_text(results.bills, results.command, _when(results)) or "(not measured in this run)",
        "",
        monthly.monthly_table(results.bills),
        "",
        monthly.fixed_detail(results.bills),
        "",
        "The example app idle (`python -m bench --only idle`):",
        "",
        "```",
        "(not measured in this run)" if results.idle is None else idle.report(results.idle, results.command),
        "```",
        "",
        "Where the gap is, line by line in the table above, and what each part buys:",
        "",
        "- DynamoDB writes: the same on the headline (3.2 write units an event each). Per publish request",
        "  Polos writes the topic's sequence counter (consecutive `sequence_id`s) and the `Idempotency-Key`",
        "  record's claim (the plan a retry finishes with the same ids; no completion write: a replay that",
        "  finds the plan's events stored answers it and sends them again), the baseline its key's two",
        "  records. Per run, Polos's lease and outcome match the baseline's two idempotency writes; per",
        "  step, Polos writes once (kept in the run item while it stays within 1 KB), the baseline twice.",
        "- DynamoDB reads: two strongly consistent reads per request the baseline does not make: the API",
        "  key's check (a revoked key is refused from the next request, so it is not cached) and the",
        "  `Idempotency-Key`'s read before the reservation (so a replay reserves no sequence ids).",
        "- Storage and PITR: the run item beside the baseline's step record (the run's status, result,",
        "  attempts, timestamps and event reference: what the runs API, the dashboard and retries read).",
        "  On the 5-step the run item holds all five steps, where the baseline stores five records.",
        "- Lambda duration: the API's sequential round trips (key check, idempotency read, sequence",
        "  reservation, claim, events, send: six a request against the baseline's four) and its own",
        "  compute (request validation, hashing, compression).",
        "- Fixed: the timers function and its schedule.",
        "",
        "A target that FAILs is printed as such: the baseline is not made to do less than what it does",
        "above, nor Polos to guarantee less. What passing the headline would take: dropping the run",
        "record (what the runs API, the dashboard and retries read), the API key check per request (a",
        "revoked key refused from the next request) or the idempotent publish; what is left after the",
        "levers below is smaller than each of those.",
        "",
        "## Cost levers of issue 26, one by one (headline, $ per million events)",
        "",
        monthly.lever_table(results.bills, results.logs_before, results.five_step_before),
        "",
        *FAIR_BASELINE,
        "",
        "## Storage levers: what each would still save on the headline (0.000: built, or nothing to save)",
        "",
        levers(results),
        "",
        "## Partition-key ceilings",
        "",
        capacity_table(results.capacity) or "(not measured in this run)",
        "",
        "## How to read it",
        "",
        "- **cost**: the real handlers (`functions/api`, `functions/worker`) and the",
        "  two baselines run on moto in-process; every AWS request is counted with botocore event hooks and",
        "  DynamoDB item sizes are turned into read/write units by DynamoDB's size rules (attribute names",
        "  + values; writes ceil(KB) of the larger of before and after; reads ceil(4 KB), half when",
        "  eventually consistent; transactions x2; a failed condition costs the existing item's size).",
        "  Index writes by DynamoDB's rules: `by_workflow` projects keys only, so a run item is written to",
        "  it once, when it is created with the index keys (`wf`, `created_at`; a single-event run has no",
        "  `wf`: its event lists it, so it writes nothing there); later writes that keep them",
        "  write nothing to it (1 write per entry, 2 when an index key changes, ceil(KB) of the projected",
        "  item each, not doubled in transactions); the column shows all write units with the index's share",
        "  in brackets.",
        "  Per event = per published event, all subscribers together. `N/req` = events per publish",
        "  request; `sub` = subscribed workflows; `batch(10)` = batch workflows of `batch_size=10`;",
        "  `sparse` = 1 event per request at 1 event/s, each delivery carrying what the mapping batches",
        "  at that rate: one event unless its batching window (`batch_timeout_seconds`) holds more back.",
        "- Every publish carries an `Idempotency-Key`, as `PolosClient` sends one with each publish",
        "  (Polos and the fair baseline honour it; the naive one ignores it); every event's `data` is 1 KB",
        "  of compact JSON:",
        "  an order (ids, customer, two line items, total) whose `note` is seeded random base64 text",
        "  (`bench.workload.sample_event`, deterministic per event). Random tokens compress worse than",
        "  common JSON text, so the event store's compression of large `data` (zlib, about 77% here) is not",
        "  flattered; the row marked *random-ASCII data* publishes 1 KB of nothing but random printable",
        "  ASCII instead, the worst case of text (zlib: about 86%; its event items stay above 1 KB). Queues",
        "  are drained after publishing, so batches are full (a busy steady state); one warm-up event per",
        "  scenario is not counted.",
        "- **Logs**: CloudWatch Logs ingestion of everything the handlers write to stdout at the level the",
        "  template deploys (`LogLevel` default, INFO) with metrics on as deployed (EMF documents are log",
        "  lines), plus Lambda's START / END / REPORT lines per invocation; each line billed as its bytes",
        f"  (the {EVENT_OVERHEAD_BYTES} bytes per event of `PutLogEvents` are a batch-size rule, not billed;",
        "  `bench/logs.py`), and stored for the retention period at $0.03/GB-month, counted uncompressed.",
        "  The fair baseline logs the lines Polos logs at the same levels; the naive one logs nothing.",
        f"- **Storage**: what each scenario left in the tables, each item + {ITEM_OVERHEAD_BYTES} bytes, in",
        "  the table and in every index holding it, each kept as long as it lives: to its TTL time (the",
        "  retention period, 30 days by the template's default, for events, runs and records of every",
        "  system; 24 hours for Polos's `Idempotency-Key` records) plus the 2 days TTL may take to delete",
        "  an expired item, plus point-in-time recovery on the tables' size (`bench/storage.py`).",
        f"- Lambda: arm64; {memory} (the template's sizes).",
        "  Billed duration = own compute measured here (wall time minus the time AWS requests were in",
        f"  flight) x {FULL_VCPU_MB} / memory size (Lambda's CPU share: one vCPU at {FULL_VCPU_MB} MB) +",
        f"  {ASSUMED_AWS_CALL_MS:g} ms per wave of AWS requests (requests that ran concurrently count once),",
        "  an assumed in-region round trip: moto's speed says nothing about AWS.",
        "  Invocations: the API per request (it checks the API key itself: one strongly consistent",
        "  GetItem per request, counted), the worker per delivered batch.",
        "- SQS: billed per started 64 KB of each request. The event source mapping's requests are billed",
        "  to you and are counted: one ReceiveMessage per delivered batch and its DeleteMessageBatch.",
        "  Empty polls are per queue, not per event: a fixed monthly line (`bench/fixed.py`). Assumed:",
        f"  {prices.ESM_IDLE_POLLERS} pollers x {prices.ESM_LONG_POLL_SECONDS} s long polls per idle queue =",
        f"  {prices.esm_idle_receives_per_month():,} receives = "
        f"${prices.esm_idle_receives_per_month() * prices.SQS_REQUEST.usd:.2f} per queue per month.",
        "- **Fixed monthly lines** (`bench/fixed.py`), per deployment, whatever the traffic: the mappings'",
        "  polling per mapped queue; the CloudWatch custom metrics the handlers' EMF documents actually",
        "  emitted (name x dimension values, $0.30 each a month); the timers function (one sweep a minute,",
        "  metered: its Lambda request and duration, DynamoDB reads, log lines) and its EventBridge",
        "  Scheduler schedule (43,200 invocations at list price, though within the 14M free); KMS (none:",
        "  the tables use DynamoDB's AWS owned key; queues SSE-SQS, free); dead-letter queues (SQS bills",
        "  requests, not stored messages). *All in* at V events a month = the fixed lines + V x the per",
        "  event price; the targets compare Polos and the fair baseline all in at 10M events a month, the",
        "  headline's deployment being its subscribed workflows' queues.",
        "- Not counted: free tiers, data transfer, the example app's scheduled workflow's own firings.",
        "- Baselines (`bench/baselines.py`): *powertools* = the fair baseline (below). *naive* = one",
        "  PutItem and one SendMessage per event per subscriber, steps called without a journal.",
        "- References: EventBridge's price just to route an event; Lambda durable functions' operation",
        "  charge alone, one operation per step per run (execution start, data written and retained not",
        "  counted: a lower bound), from the price table below.",
        "- **cold start**: fresh-process import time of each handler module with `functions/<fn>`,",
        "  `functions/` and `shared/` on `sys.path` and the functions' environment",
        "  (`bench/coldstart.py`), next to `import boto3` alone; samples interleaved, median. *import + 1st",
        "  call*: the same process then calls the handler once with a typical event (a publish, an SQS",
        "  record), AWS answered by a botocore hook (`{}`, and the key, the event counter and the run's",
        "  lease, so the publish is stored and fanned out and the run completes): an import moved into",
        "  the first call is not a saving. These rows import with bytecode, as Lambda does only when the",
        "  code ships it (its code directories are read-only: nothing compiled there is kept): `sam build`",
        "  compiles every module of the layer and the functions for python3.12 (unchecked-hash .pyc, from",
        "  the Makefiles `polos template` renders) and `make sam-check` fails on any module without it",
        "  (`infra/bytecode.py`). *import, no bytecode (as Lambda ran the build before)*: the same import",
        "  from a copy of `functions/` and of the layer (`shared/polos` and the installed distributions",
        "  `shared/requirements.txt` pulls in, botocore among them) holding no bytecode, run with `-B`, so",
        "  every sample compiles them from source; the standard library and boto3 stay compiled, as the",
        "  runtime ships them.",
        "- **request budget**: the worker's DynamoDB requests for one delivery of a single-event run and",
        "  for a duplicate delivery of it once finished (write units include index writes).",
        "- **memory**: estimated peak RSS in Lambda = RSS of a fresh process that imports the handler +",
        "  the peak of Python allocations (`tracemalloc`) during the invocation (boto3's requests and",
        "  answers included; moto serves from a process of its own, as AWS is remote to Lambda), in",
        "  subprocesses (`bench/memory.py`); target: half the template's memory size.",
        "- **throughput**: events published over HTTP to `polos dev`'s stack (moto server, 3 subscribed",
        "  1-step workflows) until every run completed, next to the AWS requests that run made, replayed",
        "  with boto3 on fresh copies of the tables and queues on the same moto server, one thread per",
        "  recording thread (`bench/throughput.py`). Then the tables are grown to 10,000 stored events",
        "  (every event, run and step copied under new keys) and the same events are published and timed",
        "  again. moto's own DynamoDB `Query` reads and sorts the whole table; the local stack installs a",
        "  partition-indexed one (`infra/local/moto_query.py`) and other speed patches of moto",
        "  (`infra/local/moto_expressions.py`, `moto_sqs.py`, `moto_dispatch.py`), all proven equal by",
        "  `make moto-parity`; the replay runs against the same patched server. moto serves from a process",
        "  of its own (`infra/local/moto_process.py`), as under `polos dev`.",
        "- **waits** (`bench/waits.py`, alone: `python -m bench --only waits`): a 1-step run with a 1-hour",
        "  wait, or with one `wait_for_event` matched by a publish, next to the same run without it (the",
        "  timers function's sweeps and the pollers' empty receives left out: not per wait). Publishes are",
        "  one 1 KB event through the API handler, its key check included. *topic never waited on* / *whose",
        "  waiters are gone*: the same publish again with the publish path's waiter matching",
        "  (`waiters.match_published`) replaced by a stub, i.e. the publish as it was before",
        "  `wait_for_event`; equal operations and no request naming a waiter item (`wait#<topic>`) pass.",
        "  *matching a wait_for_event*: the requests that publish made beyond the same publish to a topic",
        "  without waiters, by operation. Lambda durable functions: one callback = one durable operation",
        "  (its completion call, data written and retained not counted: a lower bound).",
        "",
        f"## Prices (US East, N. Virginia, as listed on {prices.PRICES_DATE})",
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

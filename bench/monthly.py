"""Issue 26's part of the report: the monthly bill all in (fixed lines + every event's share) at several
volumes, the targets against the fair baseline with PASS/FAIL, and the levers, each counted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from polos.aws.item_size import item_size
from polos.runtime.attempts import DURATION_ATTRIBUTE, AttemptSummary
from polos.runtime.journal import KEPT_STARTED, KEPT_STEP_DEFAULTS, KEPT_TOOK
from polos.timestamps import utc_iso

from bench import fixed, storage
from bench.cost import FIVE_STEP, KEYLESS, RATIO_TARGETS, TARGET, TARGET_USD_PER_MILLION, Bill, Scenario
from bench.logs import EVENT_OVERHEAD_BYTES
from bench.stack import FULL_VCPU_MB
from bench.tables import grid as _grid
from infra.metering import prices
from infra.model import FUNCTIONS

# Lambda bills the INIT phase of on-demand functions since 2025-08-01
# (https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/). Counted with the
# handlers' import time on one full core (bench --only coldstart, 2026-11-30: ~0.2 s), scaled by each
# function's CPU share, and one cold start per function every 2 hours (AWS recycles environments after some
# hours; it publishes no lifetime): an upper bound at steady low traffic.
INIT_SECONDS_FULL_CORE = 0.2
COLD_STARTS_PER_FUNCTION_MONTH = 730 // 2


@contextlib.contextmanager
def completion_at_info() -> Iterator[None]:
    """The runtime as it was before the lever: a run's completion logged at INFO (the executor's logger
    wrapped for the block)."""
    from polos.runtime import executor

    real = executor.logger

    class Before:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
            log = real.info if message == "run completed" else real.debug
            log(message, *args, stacklevel=2, **kwargs)

    executor.logger = Before()  # type: ignore[assignment]
    try:
        yield
    finally:
        executor.logger = real


def logs_usd(bill: Bill) -> float:
    """CloudWatch Logs (ingestion and storage) per million events of ``bill``."""
    lines = bill.usd_lines()
    return (
        (lines["CloudWatch Logs ingestion"] + lines["CloudWatch Logs storage"]) / bill.events * prices.MILLION
    )


def run_item_bytes_saved(duration_us: int = 200_000, step_took_us: int = 1_000) -> tuple[int, int, int]:
    """Bytes a completed single-event run item of one execution (``duration_us`` long) and one step (of
    ``step_took_us``) no longer stores (issue 26): its ``attempt#1`` summary less the duration kept instead;
    the defaults (``trigger_type`` event, the kept step's ``status`` and ``attempts`` 1); and the kept step's
    two ISO times and ``idx`` 0, less its compact ``at`` and ``took``."""
    finished = datetime.now(UTC)
    started = utc_iso(finished - timedelta(microseconds=duration_us))
    first = AttemptSummary(1, started, utc_iso(finished), "completed")
    summary = item_size({first.attribute: {"S": first.to_json()}})
    summary -= item_size({DURATION_ATTRIBUTE: {"N": str(first.duration_us)}})
    defaults = item_size({"trigger_type": {"S": "event"}})
    defaults += item_size({"m": {"M": KEPT_STEP_DEFAULTS}}) - item_size({"m": {"M": {}}})
    iso = {"started_at": {"S": started}, "finished_at": {"S": utc_iso(finished)}, "idx": {"N": "0"}}
    step_start = int(finished.timestamp() * 1_000_000)
    compact = {KEPT_STARTED: {"N": str(step_start)}, KEPT_TOOK: {"N": str(step_took_us)}}
    times = item_size({"m": {"M": iso}}) - item_size({"m": {"M": compact}})
    return summary, defaults, times


@contextlib.contextmanager
def steps_apart() -> Iterator[None]:
    """The runtime as it was before the lever: every step but the last journaled in an item of its own
    (none kept in the run item) for the block."""
    from polos.runtime import steps

    real = steps.KEEP_STEPS_WITHIN_BYTES
    steps.KEEP_STEPS_WITHIN_BYTES = 0
    try:
        yield
    finally:
        steps.KEEP_STEPS_WITHIN_BYTES = real


def _bill(bills: Sequence[Bill], system: str, scenario: Scenario) -> Bill | None:
    return next((b for b in bills if b.system == system and b.scenario == scenario), None)


def monthly_table(bills: Sequence[Bill], scenario: Scenario = TARGET) -> str:
    """The month's bill of ``scenario`` line by line at each of :data:`fixed.VOLUMES`, Polos next to the
    fair baseline, then the total, the all-in price per million events and the ratio."""
    polos, baseline = _bill(bills, "polos", scenario), _bill(bills, "powertools", scenario)
    if polos is None or baseline is None:
        return ""
    volumes = fixed.VOLUMES
    header = ["Monthly bill: " + scenario.label, *(f"Polos {v / 1e6:g}M" for v in volumes)]
    header += [f"baseline {v / 1e6:g}M" for v in volumes]
    body: list[list[str]] = []
    names = [line.name.split(" (")[0] for line in polos.fixed_lines]
    names += [n for n in (line.name.split(" (")[0] for line in baseline.fixed_lines) if n not in names]

    def fixed_of(bill: Bill, name: str) -> float:
        return sum(line.usd_per_month for line in bill.fixed_lines if line.name.split(" (")[0] == name)

    for name in names:
        body.append(
            [f"{name} (fixed)"]
            + [f"{fixed_of(polos, name):.2f}"] * len(volumes)
            + [f"{fixed_of(baseline, name):.2f}"] * len(volumes)
        )
    for line in polos.usd_lines():
        body.append(
            [line]
            + [f"{polos.usd_lines()[line] / polos.events * v:.2f}" for v in volumes]
            + [f"{baseline.usd_lines()[line] / baseline.events * v:.2f}" for v in volumes]
        )
    body.append(
        ["total $/month"]
        + [f"{polos.monthly_usd(v):.2f}" for v in volumes]
        + [f"{baseline.monthly_usd(v):.2f}" for v in volumes]
    )
    body.append(
        ["$ per million events, all in"]
        + [f"{polos.all_in_per_million(v):.3f}" if v else "-" for v in volumes]
        + [f"{baseline.all_in_per_million(v):.3f}" if v else "-" for v in volumes]
    )
    body.append(
        ["Polos / baseline"]
        + [f"{polos.monthly_usd(v) / baseline.monthly_usd(v):.2f}x" for v in volumes]
        + [""] * len(volumes)
    )
    return _grid(header, body)


def fixed_detail(bills: Sequence[Bill], scenario: Scenario = TARGET) -> str:
    """How each fixed line of the headline deployment was counted."""
    rows = []
    for system in ("polos", "powertools"):
        bill = _bill(bills, system, scenario)
        for line in bill.fixed_lines if bill else []:
            rows.append([system, line.name, f"{line.usd_per_month:.4f}", line.how])
    return _grid(["System", "Fixed line", "$/month", "counted as"], rows) if rows else ""


def target_rows(bills: Sequence[Bill]) -> list[tuple[str, float, float, bool]]:
    """(case, ratio all in at 10M/month, target, met) of each issue-26 target measured."""
    found = []
    for scenario, goal in RATIO_TARGETS.items():
        polos, baseline = _bill(bills, "polos", scenario), _bill(bills, "powertools", scenario)
        if polos is None or baseline is None:
            continue
        ratio = polos.all_in_per_million() / baseline.all_in_per_million()
        found.append((scenario.label, ratio, goal, ratio <= goal))
    return found


def targets_text(bills: Sequence[Bill], command: str, when: str) -> str:
    rows = target_rows(bills)
    if not rows:
        return ""
    volume = f"{fixed.HEADLINE_VOLUME / 1e6:g}M events/month"
    lines = [f"Issue 26 targets, all in at {volume} against the fair baseline ({when} UTC, `{command}`):"]
    for case, ratio, goal, met in rows:
        scenario = next(s for s in RATIO_TARGETS if s.label == case)
        polos = _bill(bills, "polos", scenario)
        price = f" (${polos.all_in_per_million():.3f} /M)" if polos else ""
        keyless = _bill(bills, KEYLESS, scenario)
        aside = (
            f"; {polos.all_in_per_million() / keyless.all_in_per_million():.2f}x a baseline ignoring the"
            " client's Idempotency-Key"
            if polos and keyless
            else ""
        )
        lines.append(f"- {'PASS' if met else 'FAIL'}: {case}: {ratio:.2f}x{price}, target <= {goal}x{aside}")
    headline = _bill(bills, "polos", TARGET)
    if headline is not None:
        usd = headline.usd_per_million()
        lines.append(
            f"- {'PASS' if usd <= TARGET_USD_PER_MILLION else 'FAIL'}: issue 12's headline per event, before "
            f"the fixed lines: ${usd:.3f} /M, target <= ${TARGET_USD_PER_MILLION:.2f}"
        )
    lines.append(f"Prices as listed on {prices.PRICES_DATE}: " + "; ".join(p.source for p in prices.ALL[:12]))
    return "\n".join(lines)


def lever_rows(
    bills: Sequence[Bill], logs_before: float | None = None, five_step_before: float | None = None
) -> list[list[str]]:
    """Issue 26's levers on the headline (and the 5-step's own): what each saved or would save, or what it
    adds (counted). ``logs_before``: the headline's logs $/M with a run's completion at INFO
    (:func:`completion_at_info`); ``five_step_before``: the 5-step's $/M all in with its steps apart
    (:func:`steps_apart`)."""
    polos = _bill(bills, "polos", TARGET)
    five = _bill(bills, "polos", FIVE_STEP)
    if polos is None:
        return []
    logs_after = logs_usd(polos)
    before = "not measured" if logs_before is None else f"{logs_before:.3f}"
    saved = "" if logs_before is None else f"-{logs_before - logs_after:.3f}"
    per_m = prices.MILLION / polos.events
    index = (
        polos.usd_lines()["DynamoDB writes (index)"] + polos.usd_lines()["DynamoDB storage (index)"]
    ) * per_m
    # Not written since single-event runs left the index (the runs API lists them from their events): a
    # write unit per run (its keys-only copy's storage goes too; not counted here).
    unindexed = TARGET.shape.subscribers * prices.DYNAMODB_WRITE_UNIT.usd * prices.MILLION
    kms = fixed.kms(4, len(FUNCTIONS)).usd_per_month
    batch_overhead = polos.log_events * EVENT_OVERHEAD_BYTES * prices.CLOUDWATCH_LOGS_INGESTION.usd * per_m
    months = storage.retention_months(polos.retention_days)
    lag = storage.retention_months(storage.TTL_DELETE_LAG_DAYS) / (
        months + storage.retention_months(storage.TTL_DELETE_LAG_DAYS)
    )
    stored = sum(
        polos.usd_lines()[line]
        for line in ("DynamoDB storage (tables)", "DynamoDB storage (index)", "DynamoDB PITR")
    )
    init = sum(
        INIT_SECONDS_FULL_CORE * max(1.0, FULL_VCPU_MB / spec.memory_mb) * spec.memory_mb / 1024
        for spec in FUNCTIONS
    )
    init_month = init * COLD_STARTS_PER_FUNCTION_MONTH * prices.LAMBDA_GB_SECOND_ARM.usd
    at = fixed.HEADLINE_VOLUME / prices.MILLION
    metrics = len(polos.metrics)
    summary, defaults, times = run_item_bytes_saved()
    kept_before = "not measured" if five_step_before is None or five is None else f"{five_step_before:.3f}"
    kept_saved = (
        ""
        if five_step_before is None or five is None
        else f"-{five_step_before - five.all_in_per_million():.3f}"
    )
    kept_now = "" if five is None else f"{five.all_in_per_million():.3f}"
    stored_byte = (  # storage and PITR of one byte per headline event, $ per million events
        TARGET.shape.subscribers
        * storage.retention_months(polos.retention_days + storage.TTL_DELETE_LAG_DAYS)
        * (prices.DYNAMODB_STORAGE.usd + prices.DYNAMODB_PITR.usd)
        * prices.MILLION
    )
    return [
        [
            "single-event runs listed without a runs-index entry",
            "built",
            f"-{unindexed:.3f}",
            f"the index's write unit per single-event run ({TARGET.shape.subscribers} a headline event), no "
            f"longer written (its copy's storage neither); this bill's index lines: {index:.3f}",
        ],
        [
            "a run's completion logged at DEBUG, not INFO",
            "built",
            saved,
            f"CloudWatch Logs ingestion + storage of the headline, $/M: {before} at INFO, "
            f"{logs_after:.3f} at DEBUG (same run)",
        ],
        [
            "no attempt#1 summary in a run its first execution ends",
            "built",
            f"-{summary * stored_byte:.3f}",
            f"storage + PITR of the run item's {summary} bytes less (the summary, less its duration kept in "
            "took_us); the run's status, updated_at and error tell the rest",
        ],
        [
            "run item without defaults: trigger_type event, a kept step's status and attempts 1",
            "built",
            f"-{defaults * stored_byte:.3f}",
            f"storage + PITR of the run item's {defaults} bytes less (wid says event; kept steps are "
            "completed)",
        ],
        [
            "a kept step's times as epoch microseconds and a duration; its idx 0 left out",
            "built",
            f"-{times * stored_byte:.3f}",
            f"storage + PITR of the run item's {times} bytes less (two ISO times and idx 0, less at, took)",
        ],
        [
            "5-step: each step but the last kept in the run item while it stays within 1 KB",
            "built",
            kept_saved,
            f"the 5-step's $/M all in: {kept_before} with each step in an item of its own, {kept_now} kept "
            "(same run); the same write units (each write 1 unit), four items' keys, expiry and 100-byte "
            "overhead less stored, no cancel-check read (a kept step's answer shows cancel_requested)",
        ],
        [
            "tables on DynamoDB's AWS owned key, not the AWS managed key",
            "built",
            f"-{kms / at:.3f} (-${kms:.2f}/month)",
            "KMS requests the managed key billed (bench/fixed.py's estimate); encryption at rest unchanged",
        ],
        [
            "metrics: the service dimension only; high-cardinality values as properties",
            "kept (tested)",
            "0",
            f"{metrics} custom metrics, the same for 1 or 3 workflows; a workflow_id dimension would bill "
            f"{metrics} per workflow (${prices.CLOUDWATCH_CUSTOM_METRIC.usd * metrics:.2f}/month each)",
        ],
        [
            "INIT duration billed since August 2025",
            "counted, not in the bill",
            f"+{init_month / at:.4f} (${init_month:.3f}/month)",
            f"{COLD_STARTS_PER_FUNCTION_MONTH} cold starts a function-month x {INIT_SECONDS_FULL_CORE} s "
            "import at its CPU share; the baselines import as much",
        ],
        [
            "TTL deletes lag up to 2 days",
            "counted in the bill",
            f"+{stored * lag * per_m:.3f}",
            f"storage and PITR billed for retention + {storage.TTL_DELETE_LAG_DAYS} days (both systems)",
        ],
        [
            "+26 bytes per log line",
            "refuted",
            f"-{batch_overhead:.3f}",
            "a PutLogEvents batch-size rule, not a billing rule: logs billed as their bytes",
        ],
    ]


def lever_table(
    bills: Sequence[Bill], logs_before: float | None = None, five_step_before: float | None = None
) -> str:
    rows = lever_rows(bills, logs_before, five_step_before)
    if not rows:
        return ""
    return _grid(["Lever (headline)", "state", "$/M events", "how counted"], rows)

"""``python -m bench`` (``make bench``): run every benchmark, print one table, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.report import Results

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20, help="events per cost scenario (100/req: 100)")
    parser.add_argument("--import-runs", type=int, default=11, help="fresh processes per import time")
    parser.add_argument("--throughput-events", type=int, default=300, help="events of the throughput run")
    parser.add_argument(
        "--history", type=int, default=10_000, help="stored events before the throughput run is repeated"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the Markdown report goes")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, two cost scenarios (the test suite)"
    )
    parser.add_argument(
        "--only",
        choices=["cost", "targets", "idle", "waits", "coldstart", "capacity", "timers", "fanout", "slots"],
        help="run one benchmark and print its rows (nothing is written); timers: only this way",
    )
    args = parser.parse_args(argv)
    if args.only:
        args.no_write = True
    if args.smoke:
        args.events, args.import_runs, args.throughput_events, args.history = 10, 1, 12, 48
    args.command = "make bench" if not argv else " ".join(["python -m bench", *argv])
    return args


def deployed_log_level() -> str:
    """The template's ``LogLevel`` default (the level a deployed stack logs at)."""
    from infra.template import _parameters  # the template's own parameter table: the bench cannot drift

    return str(_parameters()["LogLevel"]["Default"])


def measure(args: argparse.Namespace) -> Results:
    """Run every benchmark once."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import memory, report, throughput
    from bench.logs import tapped

    # The level the template deploys, before any handler module is imported (their loggers read it once).
    os.environ["POWERTOOLS_LOG_LEVEL"] = deployed_log_level()

    results = report.Results(command=args.command)
    if args.only == "waits":
        _measure_waits(results, args.smoke)
        return results
    if args.only in ("cost", "targets"):
        _measure_cost(results, args)
        return results
    if args.only == "capacity":
        _measure_capacity(results, args.smoke)
        return results
    if args.only == "idle":
        _measure_idle(results)
        return results
    if args.only == "slots":
        _measure_slots(results)
        return results
    _measure_coldstart(results, args.import_runs)
    if args.only == "coldstart":
        return results
    _measure_cost(results, args)
    _measure_idle(results)
    _measure_slots(results)
    _measure_waits(results, args.smoke)
    _measure_capacity(results, args.smoke)
    _progress("memory: API on a 6 MB publish, worker on its largest batch (subprocesses) ...")
    results.memory = memory.measure(smoke=args.smoke)
    _progress(
        f"throughput: {args.throughput_events} events through the local stack, then the replay, "
        f"then again with {args.history:,} events stored ..."
    )
    with tapped():
        results.throughput = throughput.measure(
            events=args.throughput_events,
            publishers=2 if args.smoke else 4,
            per_request=4 if args.smoke else 10,
            history=args.history,
        )
    return results


def _measure_cost(results: Results, args: argparse.Namespace) -> None:
    from bench import cost, monthly
    from bench.logs import tapped

    scenarios = cost.SMOKE_SCENARIOS if args.smoke else cost.SCENARIOS
    if args.only == "targets":  # issue 26's targets and the sparse rows only
        scenarios = (*cost.RATIO_TARGETS, cost.SPARSE, cost.SPARSE_BATCH)
    for scenario in scenarios:
        events = max(args.events, scenario.per_request)
        _progress(f"cost: {scenario.label}, {events} events ...")
        with tapped():  # handlers' logs and metrics (stdout, as in Lambda) are counted, not printed
            systems = (*cost.SYSTEMS, cost.KEYLESS) if scenario in cost.RATIO_TARGETS else cost.SYSTEMS
            results.bills += [cost.run(system, scenario, events) for system in systems]
    _progress("cost: the headline again with a run's completion logged at INFO (the log lever) ...")
    with tapped(), monthly.completion_at_info():
        results.logs_before = monthly.logs_usd(cost.run("polos", cost.TARGET, max(args.events, 10)))
    _progress("cost: the 5-step again with each step in an item of its own (the kept-steps lever) ...")
    with tapped(), monthly.steps_apart():
        results.five_step_before = cost.run(
            "polos", cost.FIVE_STEP, max(args.events, 10)
        ).all_in_per_million()
    if args.only == "targets":
        return
    _progress("request budgets: first delivery and a duplicate of 1-step and 5-step runs ...")
    with tapped():
        results.budgets = cost.budgets()


def _measure_idle(results: Results) -> None:
    from bench import idle
    from bench.logs import tapped

    _progress("idle: the example app's stack with no events, a month of fixed lines ...")
    with tapped():
        results.idle = idle.measure(*idle.example_app())


def _measure_slots(results: Results) -> None:
    from bench import slots
    from bench.logs import tapped

    _progress("queues: the headline run with and without a non-binding queue slot, a queued run waiting ...")
    with tapped():
        results.slots = slots.measure()


def _measure_capacity(results: Results, smoke: bool) -> None:
    from bench import capacity
    from bench.logs import tapped

    _progress("capacity: each hot-key workload, every partition key's units metered ...")
    with tapped():
        results.capacity = capacity.measure(events=20 if smoke else 200, waiting=10 if smoke else 100)


def _measure_coldstart(results: Results, runs: int) -> None:
    from bench import coldstart

    _progress(f"cold start: {runs} fresh imports of boto3 and of each handler ...")
    results.imports = coldstart.measure(runs=runs)
    results.first_calls = coldstart.measure(runs=runs, invoke=True)
    _progress(f"cold start: {runs} fresh imports of each handler from sources alone (no bytecode) ...")
    results.imports_without_bytecode = coldstart.measure_without_bytecode(runs=runs)
    for target in coldstart.targets()[1:]:
        results.import_profiles[target.label] = coldstart.heaviest(coldstart.profile(target))


def _measure_waits(results: Results, smoke: bool = False) -> None:
    from bench import waits
    from bench.logs import tapped

    _progress("waits: a 1-step run with and without a 1-hour wait ...")
    with tapped():
        results.wait = waits.measure()
    _progress("waits: publishes with and without event waiters, a matched wait_for_event ...")
    with tapped():
        results.event_wait = waits.measure_event_wait()
    _progress("waits: the payment pattern metered, its ceiling per topic ...")
    with tapped():
        results.payment = waits.measure_payment_capacity(orders=20 if smoke else waits.PAYMENT_ORDERS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.only == "timers":  # its own table and verdict (bench/timers.py); exit status 1 on FAIL
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from bench import timers

        return timers.main(smoke=args.smoke)
    if args.only == "fanout":  # its own lines and verdict (bench/fanout.py); exit status 1 on FAIL
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from bench import fanout

        return fanout.main(smoke=args.smoke)
    results = measure(args)
    from bench import report

    print(report.text(results))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.markdown(results))
        _progress(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A smoke-sized run of every benchmark (``python -m bench --smoke``), with the invariants it must show."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench import monthly, report
from bench.cost import KEYLESS, RATIO_TARGETS, SMOKE_SCENARIOS, SPARSE, TARGET, Bill
from bench.report import Results

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def results() -> Results:
    return bench_main.measure(bench_main.parse(["--smoke"]))


def _bill(results: Results, system: str, scenario: object = TARGET) -> Bill:
    (bill,) = [b for b in results.bills if b.system == system and b.scenario == scenario]
    return bill


def test_every_system_ran_every_smoke_scenario(results: Results) -> None:
    assert {(b.system, b.scenario) for b in results.bills} == {
        (system, scenario) for system in ("polos", "powertools", "naive") for scenario in SMOKE_SCENARIOS
    } | {(KEYLESS, scenario) for scenario in SMOKE_SCENARIOS if scenario in RATIO_TARGETS}
    for bill in results.bills:
        assert bill.usd_per_million() > 0
        assert set(bill.usd()) == {"HTTP-API", "Lambda", "SQS", "DynamoDB", "CloudWatch"}
        assert sum(bill.usd().values()) == pytest.approx(sum(bill.usd_lines().values()))
        # Lambda's START / END / REPORT lines at least, for every invocation.
        assert bill.log_events >= 3 * bill.lambda_invocations and bill.log_bytes > 0
        assert bill.stored.table_bytes > 0


def test_naive_baseline_counts_what_it_does(results: Results) -> None:
    naive = _bill(results, "naive")  # 10 events in one request, 1 subscriber, 1 step
    assert naive.events == 10
    assert naive.operations == {
        "dynamodb.PutItem": 10,
        "sqs.SendMessage": 10,
        "sqs.ReceiveMessage": 1,
        "sqs.DeleteMessageBatch": 1,
    }
    assert naive.write_units == 10 * 2 and naive.read_units == 0  # a 1 KB event and its keys: 2 units
    assert naive.invocations == {"ApiFunction": 1, "WorkerFunction": 1}
    assert naive.http_requests == 1


def test_powertools_baseline_writes_twice_per_step(results: Results) -> None:
    powertools = _bill(results, "powertools")
    # INPROGRESS + COMPLETED per step and for the publish's Idempotency-Key
    assert powertools.operations["dynamodb.PutItem"] == powertools.operations["dynamodb.UpdateItem"] == 10 + 1
    # Event items compressed to 1 unit (the fair baseline compresses when it pays, as Polos does)
    assert powertools.write_units == 10 * 1 + 2 * 10 + 2
    # It emits Polos's three metrics and logs no line per run at INFO.
    assert {name.split("|")[1] for name in powertools.metrics} == {
        "EventsPublished",
        "RunsStarted",
        "RunsCompleted",
    }


def test_the_month_all_in_and_issue_26s_figures(results: Results) -> None:
    polos, baseline = _bill(results, "polos"), _bill(results, "powertools")
    assert polos.metrics == {
        f"Polos|{name}|service=polos" for name in ("EventsPublished", "RunsStarted", "RunsCompleted")
    }
    fixed_names = [line.name.split(" (")[0] for line in polos.fixed_lines]
    assert fixed_names[:2] == ["SQS event source mapping polling", "CloudWatch custom metrics"]
    assert polos.monthly_usd(0) > baseline.monthly_usd(0) > 0  # Polos adds the timers function and schedule
    text = report.text(results)
    for part in ("Monthly bill: ", "$ per million events, all in", "Issue 26 targets", "Lever (headline)"):
        assert part in text
    keyless = _bill(results, KEYLESS)  # the fair baseline without idempotent publishing, beside the target
    assert keyless.write_units < baseline.write_units
    ratio = polos.all_in_per_million() / keyless.all_in_per_million()
    assert f"{ratio:.2f}x a baseline ignoring the client's Idempotency-Key" in text
    # Measured (the saving itself shows outside pytest, whose capture keeps the handlers' INFO lines from
    # the tap: `python -m bench --only targets`; tests/worker/test_worker_observability.py holds the level).
    assert results.logs_before is not None and results.logs_before > 0 and monthly.logs_usd(polos) > 0
    assert results.idle is not None and results.idle.queues == 12 and results.idle.passed


def test_polos_stays_within_its_request_budget(results: Results) -> None:
    polos = _bill(results, "polos")
    # Publish: at most ceil(N/25) + 2 DynamoDB requests; a 1-step run: at most 1 read and 3 writes.
    publish = polos.operations["dynamodb.BatchWriteItem"] + polos.operations["dynamodb.UpdateItem"]
    assert polos.dynamodb_requests <= math.ceil(10 / 25) + 2 + 10 * 4
    assert publish >= 1
    assert polos.read_units <= 10 * 1 + 1  # + the API key check: one strongly consistent read per request
    assert polos.index_write_units == 0  # a single-event run has no index entry (its event lists it)
    assert polos.invocations == {"ApiFunction": 1, "WorkerFunction": 1}  # no authorizer: the API checks keys
    assert polos.idle_receives >= 1  # the last poll found the queue empty, and was left out


def test_batch_scenario_invokes_the_worker_once_per_batch_and_subscriber(results: Results) -> None:
    batch = SMOKE_SCENARIOS[1]
    for system in ("polos", "powertools", "naive"):
        assert _bill(results, system, batch).invocations["WorkerFunction"] == batch.shape.subscribers


def test_sparse_traffic_delivers_one_message_per_batch(results: Results) -> None:
    # 1 event/s and no batching window: the mapping hands each message over alone.
    sparse = _bill(results, "polos", SPARSE)
    assert sparse.invocations["WorkerFunction"] == sparse.events  # one message per delivered batch
    assert sparse.invocations["ApiFunction"] == sparse.events  # one request per event, each checks its key


def test_headline_breakdown_and_levers(results: Results) -> None:
    text = report.text(results)
    assert "DynamoDB writes (index)" in text and "CloudWatch Logs ingestion" in text
    levers = _bill(results, "polos").levers
    assert levers[0].name == "keys-only runs index"
    # Built: the index projects keys only, so an update of a run item writes nothing to it; the lease
    # is taken first (no journal read) and the last step goes with the outcome: nothing left to save.
    assert [lever.usd_per_million for lever in levers[:3]] == [0, 0, 0]
    assert all(lever.usd_per_million >= 0 for lever in levers)


def test_budgets_and_memory_measured(results: Results) -> None:
    assert [b.case for b in results.budgets] == [
        "first delivery, 1-step single-event run",
        "duplicate of a finished 1-step run",
        "first delivery, 5-step single-event run",
        "duplicate of a finished 5-step run",
    ]
    assert all(b.requests >= 1 for b in results.budgets)
    assert [use.function for use in results.memory] == ["API", "worker"]
    assert all(use.import_mb > 10 and use.invocation_peak_mb > 0 for use in results.memory)


def test_cold_start_and_throughput_measured(results: Results) -> None:
    labels = [timing.target.label for timing in results.imports]
    assert labels == [
        "boto3",
        "functions/api/app.py",
        "functions/worker/app.py",
    ]
    assert [timing.target.label for timing in results.first_calls] == [
        labels[0],
        *(f"{label} + 1st call" for label in labels[1:]),
    ]
    assert all(timing.median > 0 for timing in results.imports + results.first_calls)
    assert set(results.import_profiles) == set(labels[1:])
    assert all(results.import_profiles.values())
    throughput = results.throughput
    assert throughput is not None and throughput.events == 12
    assert throughput.events_per_second > 0 and throughput.limit_events_per_second > 0
    assert throughput.aws_calls >= 12 * 3  # at least one request per run
    assert throughput.history >= 48 and throughput.history_events_per_second > 0


def test_table_has_every_figure_and_a_verdict_per_target(results: Results) -> None:
    rows = report.rows(results)
    assert all(row.result for row in rows)
    targets = [row for row in rows if row.target]
    # cost, imports (API, worker), budgets, memory, throughput x3, event waits (2 publishes, a topic whose
    # waits ended, 1 match), the payment pattern's rate per topic, a queue slot's extra units
    assert len(targets) == 1 + 2 + 4 + 2 + 3 + 4 + 1 + 1
    assert all(row.verdict in ("PASS", "FAIL") for row in targets)
    assert {row.benchmark for row in rows} == {
        "cost",
        "reference",
        "cold start",
        "request budget",
        "memory",
        "throughput",
        "waits",
        "queues",
    }
    wait = next(row for row in rows if row.benchmark == "waits" and row.system == "Polos")
    assert "per million waits" in wait.result and "$0 per second waited" in wait.result
    event_waits = [row for row in rows if row.benchmark == "waits" and row.target]
    assert [row.verdict for row in event_waits] == ["PASS"] * 5  # and the payment pattern's rate


def test_main_prints_the_table_and_writes_the_report(
    results: Results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_main, "measure", lambda args: results)
    out = tmp_path / "benchmarks.md"
    assert bench_main.main(["--smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == report.text(results)
    text = out.read_text()
    assert "Generated by `" in text and "Machine: " in text and " CPUs " in text
    assert report.table(report.rows(results)) in text
    assert "https://aws.amazon.com/sqs/pricing/" in text


def test_capacity_meters_every_hot_key_class(results: Results) -> None:
    from infra.metering import capacity

    classes = {load.key_class for load in results.capacity}
    hot = {
        capacity.TOPIC_COUNTER,
        capacity.TOPIC_EVENTS,
        capacity.TOPIC_CLIENT_IDS,
        capacity.WAITERS,
        capacity.WORKFLOW_INDEX,
        capacity.API_KEY,
        capacity.TIMER_SHARD,
    }
    assert hot <= classes
    # Every request checks its API key: a read on the key's item.
    assert all(load.read_units > 0 for load in results.capacity if load.key_class == capacity.API_KEY)
    assert "Partition-key ceilings" in report.text(results)

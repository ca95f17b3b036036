"""Issue 14's cost rows, measured by the meter (``bench.waits.measure_event_wait``) and held to their targets:
a publish to a topic without waiters costs no extra request, a matched ``wait_for_event`` at most 4."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench import report, waits
from bench.waits import EventWaitCost, PartitionLoad, PaymentCapacity

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cost() -> EventWaitCost:
    return waits.measure_event_wait()


@pytest.fixture(scope="module")
def payment() -> PaymentCapacity:
    return waits.measure_payment_capacity(orders=20)


def test_the_payment_pattern_sustains_its_target_rate_per_topic(payment: PaymentCapacity) -> None:
    rows = report.payment_rows(payment)
    assert rows[-1].target and rows[-1].verdict == "PASS", report.table(rows)
    per_topic = {load.hot for load in payment.loads if load.per_topic}
    assert {"topic counter (seq#<topic>)", "topic events (topic#<topic>)"} <= per_topic
    assert not any(load.hot.startswith("match-less waiters") for load in payment.loads)  # no shared partition


def test_a_read_of_every_waiter_on_each_publish_fails_the_payment_row(payment: PaymentCapacity) -> None:
    """The verdict is computed: 10,000 waiters (~200 bytes each) read by every publish of 10 events puts
    the topic's waiter partition far below the target."""
    per_event = 10_000 * 200 / 4096 / waits.PAYMENTS_PER_REQUEST
    every_waiter = PartitionLoad("match-less waiters (wait#<topic>)", True, per_event, 0.0)
    regressed = PaymentCapacity(
        payment.events, (*payment.loads, every_waiter), payment.look_back_units_per_event
    )
    assert report.payment_rows(regressed)[-1].verdict == "FAIL"


def test_publish_to_a_topic_without_waiters_costs_what_it_did_before_waiters(cost: EventWaitCost) -> None:
    for publish, stubbed in (
        (cost.quiet, cost.quiet_without_waiters_path),
        (cost.emptied, cost.emptied_without_waiters_path),
    ):
        assert publish.operations == stubbed.operations
        assert (publish.write_units, publish.read_units) == (stubbed.write_units, stubbed.read_units)
        assert publish.waiter_requests == 0
        # publishing.py's budget: the API key check, 1 reserve, ceil(N/25) BatchWriteItem (no subscriber).
        assert dict(publish.operations) == {
            "dynamodb.GetItem": 1,
            "dynamodb.UpdateItem": 1,
            "dynamodb.BatchWriteItem": math.ceil(1 / 25),
        }


def test_a_matched_wait_for_event_adds_at_most_four_requests_to_its_publish(cost: EventWaitCost) -> None:
    # The waiters Query, the step's completion, the run's wake-up, the waiter's removal.
    assert cost.added_by_match == {
        "dynamodb.Query": 1,
        "dynamodb.UpdateItem": 1,
        "sqs.SendMessageBatch": 1,
        "dynamodb.DeleteItem": 1,
    }
    assert sum(cost.added_by_match.values()) <= report.MATCHED_WAIT_TARGET_REQUESTS
    assert cost.matched.waiter_requests == 2  # the Query and the removal name the waiter's partition


def test_the_whole_wait_is_priced_next_to_a_durable_functions_callback(cost: EventWaitCost) -> None:
    assert cost.wait.requests >= sum(cost.added_by_match.values())
    assert cost.wait.lambda_invocations == 1 and cost.wait.write_units > 0
    assert cost.wait.usd_per_million() > 0


def test_rows_pass_their_targets(cost: EventWaitCost) -> None:
    rows = report.event_wait_rows(cost)
    targeted = [row for row in rows if row.target]
    assert [row.case for row in targeted] == [
        "publish 1 event, topic never waited on",
        "publish 1 event, topic whose waiters are gone",
        "publish 1 event, waiters matched, their waits not ended",
        "publish 1 event matching a wait_for_event",
    ]
    assert [row.verdict for row in targeted] == ["PASS"] * 4, report.table(rows)
    durable = next(row for row in rows if row.system == "Lambda durable functions")
    assert "per million callbacks" in durable.result and durable.relative.endswith("x")


def test_a_waiter_read_on_every_publish_fails_the_no_waiters_row(cost: EventWaitCost) -> None:
    """The verdict is computed, not printed: one more request on the quiet topic turns it to FAIL."""
    quiet = cost.quiet_without_waiters_path
    regressed = waits.PublishCost(
        operations=(*quiet.operations, ("dynamodb.Query", 1)),
        read_units=quiet.read_units + 0.5,
        write_units=quiet.write_units,
        sqs_requests=quiet.sqs_requests,
        waiter_requests=1,
    )
    row = report._no_waiters_row("regressed", regressed, cost.quiet_without_waiters_path)
    assert row.verdict == "FAIL" and row.result.startswith("+1 requests")


def test_only_waits_prints_their_rows_and_writes_nothing(
    cost: EventWaitCost,
    payment: PaymentCapacity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(waits, "measure", lambda: cost.wait)
    monkeypatch.setattr(waits, "measure_event_wait", lambda: cost)
    monkeypatch.setattr(waits, "measure_payment_capacity", lambda **_: payment)
    out = tmp_path / "benchmarks.md"
    assert bench_main.main(["--only", "waits", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    assert {line.split("|")[1].strip() for line in printed.splitlines()[2:]} == {"waits"}
    assert "publish 1 event matching a wait_for_event" in printed and "FAIL" not in printed

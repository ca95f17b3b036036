"""The monthly bill's fixed lines: each counted once per what it is billed for (issue 26)."""

from __future__ import annotations

import pytest
from polos.app import App

from bench import cost, fixed, idle
from bench.logs import tapped
from bench.workload import APP_TARGET, SHAPES, WORKFLOWS, Shape
from infra.metering import prices


def _app(shape: Shape) -> App:
    chosen = set(shape.workflow_ids())
    return App(APP_TARGET, [wf for wf in WORKFLOWS if wf.id in chosen])


def test_a_stack_of_three_workflows_idles_at_three_times_the_polling_line() -> None:
    one = idle.measure(_app(Shape(1, 1, False)), APP_TARGET)
    three = idle.measure(_app(Shape(3, 1, False)), APP_TARGET)
    assert (one.queues, three.queues) == (1, 3)
    per_queue = prices.esm_idle_receives_per_month() * prices.SQS_REQUEST.usd
    assert one.polling.usd_per_month == pytest.approx(per_queue)
    assert three.polling.usd_per_month == pytest.approx(3 * one.polling.usd_per_month)
    names = {line.name.split(" (")[0]: line for line in three.lines}
    assert set(names) == {
        "SQS event source mapping polling",
        "CloudWatch custom metrics",
        "Timers function",
        "EventBridge Scheduler",
        "KMS",
        "Dead-letter queues",
    }
    # One timers function and one schedule whatever the workflows: equal lines, a sweep a minute.
    assert names["Timers function"].usd_per_month > 0
    timers_one = next(line for line in one.lines if line.name.startswith("Timers function"))
    assert names["Timers function"].how.startswith(f"{fixed.SWEEPS_PER_MONTH:,} sweeps")
    assert timers_one.usd_per_month == pytest.approx(names["Timers function"].usd_per_month, rel=0.5)
    assert names["EventBridge Scheduler"].usd_per_month == pytest.approx(
        fixed.SWEEPS_PER_MONTH * prices.SCHEDULER_INVOCATION.usd
    )
    assert names["Dead-letter queues"].usd_per_month == 0
    # An idle sweep emits no metric: nothing is billed for metrics while nothing runs.
    assert names["CloudWatch custom metrics"].usd_per_month == 0


def test_the_metrics_line_counts_what_was_emitted_and_does_not_grow_with_workflows() -> None:
    with tapped():  # the handlers' stdout (their EMF documents) counted, as in every bench run
        one = cost.run("polos", cost.Scenario(1, Shape(1, 1, False)), 2)
        three = cost.run("polos", cost.Scenario(1, Shape(3, 1, False)), 2)
    assert one.metrics and one.metrics == three.metrics  # no per-workflow dimension
    (line,) = (line for line in three.fixed_lines if line.name.startswith("CloudWatch custom metrics"))
    assert line.usd_per_month == pytest.approx(len(three.metrics) * prices.CLOUDWATCH_CUSTOM_METRIC.usd)


def test_kms_bills_only_for_an_aws_managed_key() -> None:
    assert fixed.kms(0, 3).usd_per_month == 0
    managed = fixed.kms(4, 3)
    assert managed.usd_per_month == pytest.approx(4 * 3 * 12 * 730 * prices.KMS_REQUEST.usd)


def test_the_monthly_bill_is_the_fixed_lines_plus_each_events_share() -> None:
    bill = cost.run("powertools", cost.TARGET, 10)
    assert bill.monthly_usd(0) == pytest.approx(fixed.total(bill.fixed_lines)) and bill.monthly_usd(0) > 0
    assert bill.monthly_usd(10_000_000) == pytest.approx(
        fixed.total(bill.fixed_lines) + bill.usd_per_million() * 10
    )
    assert bill.all_in_per_million() == pytest.approx(bill.monthly_usd(10_000_000) / 10)
    assert SHAPES  # the bench app's shapes are what the scenarios run

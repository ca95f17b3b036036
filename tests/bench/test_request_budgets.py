"""Issue 12's request budgets of the worker, measured by the bench meter (``bench.cost.budgets``): a first
delivery of a k-step single-event run reads nothing and is billed at most k + 2 write units, index writes
included; a duplicate delivery of the finished run is one request."""

from __future__ import annotations

import pytest

from bench import cost

pytestmark = pytest.mark.timeout(600)
STEPS = (1, 5)


@pytest.fixture(scope="module")
def budgets() -> dict[str, cost.Budget]:
    return {budget.case: budget for budget in cost.budgets(STEPS)}


@pytest.mark.parametrize("k", STEPS)
def test_a_first_delivery_reads_nothing_and_writes_at_most_k_plus_2_units(
    budgets: dict[str, cost.Budget], k: int
) -> None:
    first = budgets[f"first delivery, {k}-step single-event run"]
    assert first.read_requests == 0, first
    assert first.write_units <= k + 2, first
    assert first.met


@pytest.mark.parametrize("k", STEPS)
def test_a_duplicate_of_a_finished_run_is_one_request(budgets: dict[str, cost.Budget], k: int) -> None:
    again = budgets[f"duplicate of a finished {k}-step run"]
    assert again.requests == 1, again
    assert again.met

"""The queues bench row: a slot that never binds adds at most 2 write units to a run (its take and its
free), and a queued run is billed nothing while it waits."""

from __future__ import annotations

from bench import slots
from bench.report import slot_rows


def test_a_non_binding_slot_costs_at_most_two_write_units_and_a_queued_run_nothing_while_it_waits() -> None:
    cost = slots.measure()
    assert 0 < cost.extra_write_units <= slots.TARGET_EXTRA_WRITE_UNITS
    assert cost.queued_requests == 0
    (row,) = slot_rows(cost)
    assert row.verdict == "PASS" and row.benchmark == "queues"

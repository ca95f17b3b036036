"""The queues bench rows: a slot that never binds adds at most 2 write units to a run (its take and its
free), a queued run is billed nothing while it waits, and strict_order's registry is priced apart."""

from __future__ import annotations

from bench import slots
from bench.report import slot_rows


def test_a_non_binding_slot_costs_at_most_two_write_units_and_a_queued_run_nothing_while_it_waits() -> None:
    cost = slots.measure()
    assert 0 < cost.extra_write_units <= slots.TARGET_EXTRA_WRITE_UNITS
    assert cost.queued_requests == 0
    row, order = slot_rows(cost)
    assert row.verdict == "PASS" and row.benchmark == "queues"
    assert cost.unordered_registry_requests == 0  # without strict_order: no registry request at all
    # strict_order's registry is billed on its own row (no target): one write per request and key, and
    # one per admission.
    assert 0 < cost.order_write_units < cost.order_write_units_keyed
    assert f"+{cost.order_write_units:g} WRU/event" in order.result

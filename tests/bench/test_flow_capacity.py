"""A throttle's or rate limit's key never caps its workflow below min(limit / period, 1,000 starts/s): its
window is sharded past one item's writes (``polos.runtime.event_flow.shards``), metered end to end on the
capacity bench's workloads and checked for every limit and period at a full window."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from polos.flow_control import MAX_PERIOD_SECONDS, MAX_THROTTLE_LIMIT, FlowLimit
from polos.runtime import event_flow

from bench import capacity
from bench.stack import MeteredStack
from bench.workload import sample_event
from infra.metering.capacity import FLOW_KEY, HEADROOM, WRITE_LIMIT
from infra.metering.meter import Meter

EVENTS = 200


@pytest.fixture(scope="module")
def metered() -> Iterator[tuple[MeteredStack, Meter]]:
    with capacity.metered_stack() as opened:
        yield opened


@pytest.mark.parametrize("option", ["throttle", "rate_limit"])
def test_a_flow_keys_ceiling_is_at_least_its_limit_per_period_up_to_1000_a_second(
    metered: tuple[MeteredStack, Meter], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, meter = metered
    events = [sample_event(n) for n in range(EVENTS)]  # the workflows' limits have no key: all one key
    (load,) = [
        load for load in capacity.flow_key_loads(stack, meter, option, events) if load.key_class is FLOW_KEY
    ]
    _, limit = capacity.FLOW_WORKLOADS[option]
    assert load.target == min(limit["limit"] / limit["period"], 1_000)
    assert load.ceiling >= load.target, f"{option} {limit}: {load.ceiling:,.0f} starts/s"
    assert load.verdict == "PASS"
    with capsys.disabled():
        print(
            f"\n{option} {limit}: {load.key}: {load.ceiling:,.0f} events/s ({load.write_units:.3f} WCU/event)"
        )


LIMITS = [1, 10, 100, 1_000, 5_000, 10_000]


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("throttle", limit) for limit in LIMITS if limit <= MAX_THROTTLE_LIMIT]
    + [("rate_limit", limit) for limit in LIMITS],
)
@pytest.mark.parametrize("period", [1, 10, 60, 3600, MAX_PERIOD_SECONDS])
def test_each_shard_of_a_full_window_stays_under_80_percent_of_an_items_writes(
    kind: str, limit: int, period: int
) -> None:
    """At limit / period starts a second, each shard's share of the starts (a throttled start two writes,
    a grant one, each as many units as the shard's item at its fullest) keeps it under 80 % of 1,000 write
    units a second; one item when the rate is low."""
    option = FlowLimit(kind, "data.customer", float(period), limit=limit)
    count = event_flow.shards(option)
    share = max(event_flow.shard_caps(limit, count))
    kept = share + max(share, event_flow.WAITING_KEPT) if kind == "throttle" else share
    size = event_flow.ITEM_BYTES + event_flow.ENTRY_BYTES * kept
    writes = 2 if kind == "throttle" else 1
    units_per_second = writes * math.ceil(size / 1024) * share / period
    assert units_per_second <= HEADROOM * WRITE_LIMIT, (kind, limit, period, count)
    assert count == 1 or limit / period > 1, "one item when the rate is low"
    assert count <= 100, "every shard read by one BatchGetItem"

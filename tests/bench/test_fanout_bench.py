"""``python -m bench --only fanout`` at smoke size: a fan-out's bill per child, next to Lambda durable
functions' ``map`` per item."""

from __future__ import annotations

import pytest

import bench.__main__ as bench_main
from bench import fanout

pytestmark = pytest.mark.timeout(300)


def test_a_fan_out_is_billed_per_child_and_within_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    cost = fanout.measure(10)
    bill = cost.bill
    # each child: at least its run item, its lease and its outcome written, its message sent and received
    assert bill.write_units >= 3 * cost.children and bill.sqs_requests >= 2 * cost.children / 10
    assert bill.lambda_invocations >= 2  # the children's and the parent's (start, resume)
    assert cost.map_usd_per_million_items == pytest.approx(16.0)
    assert cost.usd_per_million_children > 0 and cost.passed, fanout.report(cost)
    assert bench_main.main(["--only", "fanout", "--smoke"]) == 0
    assert "per million children" in capsys.readouterr().out

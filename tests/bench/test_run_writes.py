"""Issue 26: every DynamoDB write a single-event run makes from its delivery to its completion, metered on the
bench's stack. A k-step run writes k + 1 times, each to its run item and each one write unit: the lease
(which creates the run item), each step but the last kept in the run item (it stays within 1 KB), and the
outcome, which carries the last step; never an item of a step's own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bench import cost
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from bench.workload import APP_TARGET, Shape, app, sample_event
from infra.metering import prices
from infra.metering.meter import Call, Meter

pytestmark = pytest.mark.timeout(300)
EVENTS = 10  # one publish request, as the headline's


@pytest.fixture(scope="module")
def worker_writes() -> Iterator[dict[int, list[list[Call]]]]:
    """For k = 1 and 5: each run's worker writes, for ``EVENTS`` events published in one request."""
    found: dict[int, list[list[Call]]] = {}
    for k in (1, 5):
        shape = Shape(1, k, False)
        with tempfile.TemporaryDirectory() as tmp, aws_in_process():
            meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
            with MeteredStack(
                app(), Path(tmp), meter, polos_handlers, app_target=APP_TARGET, options=cost.OPTIONS
            ) as stack:
                stack.publish(shape.topic, [sample_event(0)])  # warm-up
                stack.drain(shape.workflow_ids())
                meter.reset()
                stack.publish(shape.topic, [sample_event(1 + i) for i in range(EVENTS)], cost.client_key(1))
                stack.drain(shape.workflow_ids())
                by_run: dict[str, list[Call]] = {}
                for call in meter.select("dynamodb"):
                    if (call.tag or "").startswith("WorkerFunction") and call.items:
                        by_run.setdefault(call.items[0].key, []).append(call)
                found[k] = list(by_run.values())
    yield found


def _writes(calls: list[Call]) -> list[tuple[str, str]]:
    return [(call.operation, item.kind) for call in calls for item in call.items]


@pytest.mark.parametrize("k", [1, 5])
def test_a_k_step_run_writes_k_plus_one_times(worker_writes: dict[int, list[list[Call]]], k: int) -> None:
    runs = worker_writes[k]
    assert len(runs) == EVENTS
    lease = ("UpdateItem", "runs:run#/run")
    for calls in runs:
        # the lease (creating the run item), steps 1..k-1 kept in it, the outcome with step k
        assert _writes(calls) == [lease] * (k + 1), _writes(calls)
        # each a single write unit of the table (the run item stays under 1 KB); the lease's index entry
        # is the runs index's (issue 26's other lever)
        assert [call.write_units - call.index_write_units for call in calls] == [1.0] * (k + 1)

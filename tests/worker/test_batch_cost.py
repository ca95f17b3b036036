"""What a batch(10) run costs in DynamoDB units, metered as the cost benchmark meters it (issue 26)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import boto3

from bench.cost import OPTIONS, client_key
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from bench.workload import APP_TARGET, Shape, app, sample_event
from infra.metering import prices
from infra.metering.meter import Meter

BATCHES = 2
BATCH = 10
# Per event: its claim, a tenth of the run item (its member list inside), of its index entry and of the
# finish (1 write unit each, none of them transactional: a transaction bills every unit twice).
MAX_WORKER_WRITE_UNITS_PER_EVENT = 1.3
# Per event: its claim read once, eventually consistently (claims never change hands).
MAX_WORKER_READ_UNITS_PER_EVENT = 0.5


def test_a_batch_of_ten_writes_at_most_thirteen_units_and_reads_five() -> None:
    shape = Shape(1, 1, True)
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        with MeteredStack(
            app(), Path(tmp), meter, polos_handlers, app_target=APP_TARGET, options=OPTIONS
        ) as stack:
            stack.publish(shape.topic, [sample_event(0)])  # warm-up: a batch of one
            stack.drain(shape.workflow_ids())
            meter.reset()
            for n in range(BATCHES):
                events = [sample_event(1 + n * BATCH + i) for i in range(BATCH)]
                stack.publish(shape.topic, events, idempotency_key=client_key(n))
            assert stack.drain(shape.workflow_ids()) == BATCHES * BATCH
            worker = [c for c in meter.select("dynamodb") if (c.tag or "").startswith("WorkerFunction")]
    events = BATCHES * BATCH
    calls = [(c.operation, c.write_units, c.read_units) for c in worker]
    assert sum(c.write_units for c in worker) / events <= MAX_WORKER_WRITE_UNITS_PER_EVENT, calls
    assert sum(c.read_units for c in worker) / events <= MAX_WORKER_READ_UNITS_PER_EVENT, calls

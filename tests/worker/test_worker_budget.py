"""DynamoDB request budgets of the worker, counted with botocore hooks on the process-wide client.

Reads count API calls (a BatchGetItem is one read); writes count items written (a transaction of twelve
actions is twelve writes), so neither budget can be met by packing work into fewer, bigger calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.stack import provision
from helpers.worker import Pump, count_requests, publish
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.publish.fanout import deliver, event_messages


def double(value: int) -> int:
    return 2 * value


@workflow(id="wbud-single", trigger_on_event="wbud/single")
async def single(ctx: WorkflowContext, payload: EventPayload) -> int:
    return int(await ctx.step.run("double", double, payload.sequence_id))


@workflow(id="wbud-batch", trigger_on_event="wbud/batch", batch_size=10, batch_timeout_seconds=5)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> int:
    return int(await ctx.step.run("double", double, len(payload.events)))


APP = App("worker-budget", [single, batch])


@pytest.fixture
def pump(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pump:
    return Pump(APP, provision(APP, tmp_path, monkeypatch))


def test_a_single_event_run_of_one_step_costs_no_read_and_two_writes(pump: Pump) -> None:
    [event] = publish("wbud/single", {})
    with count_requests() as requests:
        delivery = pump.once("wbud-single")
    assert delivery is not None and len(delivery.messages) == 1 and not delivery.failed
    # Lease first: its answer says no earlier attempt ran (and would name a batch run's claim of the
    # event, kept in the run item's place), so nothing is read.
    assert requests.reads == 0, requests.calls
    # The lease, then the outcome with the step's journal entry (its last step) in the same UpdateItem.
    assert requests.written_items <= 2, requests.calls
    assert dict(requests.calls) == {"UpdateItem": 2}
    # A duplicate of the finished run is acknowledged for one request (the lease's write, refused).
    deliver(event_messages("wbud/single", [event]))
    with count_requests() as requests:
        again = pump.once("wbud-single")
    assert again is not None and not again.failed
    assert dict(requests.calls) == {"UpdateItem": 1}


def test_ten_events_into_one_batch_run_of_one_step_cost_one_read_and_twelve_writes(pump: Pump) -> None:
    publish("wbud/batch", *[{"n": n} for n in range(10)])
    with count_requests() as requests:
        delivery = pump.once("wbud-batch")
    assert delivery is not None and len(delivery.messages) == 10 and not delivery.failed
    assert requests.reads <= 1, requests.calls
    assert requests.written_items <= 12, requests.calls
    # Claims read (1); the anchor claim, the run item (both with the member list), the 9 other claims (11);
    # the finish with the step (1). No transaction: it would bill each of those writes twice.
    assert dict(requests.calls) == {"BatchGetItem": 1, "PutItem": 11, "UpdateItem": 1}
    assert requests.written_items == 12

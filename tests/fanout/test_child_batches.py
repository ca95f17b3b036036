"""The fan-out's AWS requests at its limit: 1,000 children started without a transaction, their messages
10 a request, a replay starting none again; their ends counted once each over 16 partition keys."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import child_batches
from polos.runtime.records import ParentRef
from polos.testing import local_stack

from infra.metering.meter import Meter


@workflow(id="cb-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    return int(payload["n"])


pytestmark = pytest.mark.timeout(600)  # 1,000 runs written on moto
APP = App("child-batches", [child])
N = child_batches.MAX_CHILDREN


def test_a_thousand_children_start_once_in_plain_writes_and_sends_of_ten() -> None:
    with local_stack(APP):
        meter = Meter()
        meter.attach(settings.dynamodb(), settings.sqs())
        children = [child_batches.Child("cb-child", f'{{"n": {n}}}') for n in range(N)]
        started = child_batches.start("run_parent", "parent-wf", "all", children, True)
        operations = Counter(call.operation for call in meter.calls)
        assert [run.run_id for run in started] == child_batches.child_ids("run_parent", "all", N)
        assert operations == {"PutItem": N, "SendMessageBatch": N // 10}, operations
        meter.reset()
        again = child_batches.start("run_parent", "parent-wf", "all", children, True)  # a replay
        # the stored children came back (their first creation time): none was created again
        assert [(run.run_id, run.created_at) for run in again] == [(r.run_id, r.created_at) for r in started]
        meter.detach()


def test_a_thousand_ends_in_any_order_and_repeated_complete_once_over_16_keys() -> None:
    with local_stack(APP):
        meter = Meter()
        meter.attach(settings.dynamodb())
        order = list(range(N))
        random.Random(7).shuffle(order)
        last = [child_batches.record_end(ParentRef("run_p", "wf", "all", index, N)) for index in order]
        assert last == [False] * (N - 1) + [True]
        repeated = [
            child_batches.record_end(ParentRef("run_p", "wf", "all", index, N)) for index in order[:5]
        ]
        assert (
            repeated == [True] * 5
        )  # a retried end after all ended finds them ended (completing is idempotent)
        keys = {call.params["Key"]["pk"]["S"] for call in meter.calls if call.operation == "UpdateItem"}
        assert len(keys) == 16  # no single item takes the 1,000 writes
        meter.detach()

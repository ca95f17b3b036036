"""The mapping's faults fire: ``shuffle`` reorders a receive, ``duplicates`` delivers a message twice (in
one batch, or to another invocation), ``limits`` cuts a batch to Lambda's 6 MB, ``pollers`` runs one
workflow's function concurrently."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

from polos import WorkflowContext, workflow
from polos.app import App
from polos.payloads import EventPayload
from polos.testing import local_stack

from infra.local.faults.config import AwsFaults
from infra.local.faults.injector import Injector
from infra.local.faults.queues import QueueFaults
from infra.local.mapping import EventSourceMapping, MappingSpec, drain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from test_mapping import ARN, Clock, ScriptedSQS, message


def mapping(faults: str | None, messages: list[dict[str, Any]], invoke: Any = None) -> EventSourceMapping:
    clock = Clock()
    sqs = ScriptedSQS(clock, [(0.0, m) for m in messages])
    queue_faults = QueueFaults(Injector(AwsFaults.parse(faults, seed=3)), "wf") if faults else None
    return EventSourceMapping(
        MappingSpec("wf", "url", ARN, batch_size=10),
        sqs,  # type: ignore[arg-type]
        invoke or (lambda event: None),
        clock=clock,
        pause=clock.sleep,
        faults=queue_faults,
    )


def test_a_shuffled_receive_comes_out_of_send_order_with_a_fixed_seed() -> None:
    sent = [f"m{n}" for n in range(10)]
    plain = mapping(None, [message(n) for n in range(10)])
    assert [m["MessageId"] for m in plain.collect(wait_seconds=0)] == sent  # moto's kindness

    shuffled = mapping("shuffle", [message(n) for n in range(10)])
    received = [m["MessageId"] for m in shuffled.collect(wait_seconds=0)]
    assert received != sent and sorted(received) == sorted(sent)
    assert shuffled.faults is not None and shuffled.faults.pollers == 1
    again = mapping("shuffle", [message(n) for n in range(10)])
    assert [m["MessageId"] for m in again.collect(wait_seconds=0)] == received  # the seed replays it


def test_a_duplicate_is_delivered_twice_in_one_batch_or_to_another_invocation() -> None:
    delivered: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> None:
        delivered.append([record["messageId"] for record in event["Records"]])

    duplicated = mapping("duplicates=1", [message(n) for n in range(4)], invoke)
    deliveries = drain([duplicated])
    seen = [message_id for batch in delivered for message_id in batch]
    assert sorted(seen) == sorted([f"m{n}" for n in range(4)] * 2)  # every message twice
    assert any(len(batch) != len(set(batch)) for batch in delivered)  # twice in one batch (seed 3)
    assert len(deliveries) >= 2  # ... and copies handed to a later invocation
    sqs = duplicated._sqs
    assert sorted(sqs.deleted) == [f"r{n}" for n in range(4)]  # type: ignore[attr-defined]  # originals once


def test_a_batch_over_six_megabytes_is_cut_to_fit_and_the_rest_goes_back() -> None:
    big = [{**message(n), "Body": "x" * 1_000_000} for n in range(10)]  # 10 MB of SQS's 1 MiB messages
    carried: list[int] = []
    plain = mapping(None, [dict(m) for m in big], lambda event: carried.append(len(event["Records"])))
    plain.poll(wait_seconds=0)
    assert carried == [10]  # moto and the emulation take it all

    carried.clear()
    limited = mapping("limits", big, lambda event: carried.append(len(event["Records"])))
    limited.poll(wait_seconds=0)
    assert carried == [6]
    assert limited._sqs.released == [f"r{n}" for n in range(6, 10)]  # type: ignore[attr-defined]


loops_in_flight: dict[int, int] = {}  # event loop (one per invocation) -> its steps in flight
most_invocations = 0
lock = threading.Lock()


async def track(label: str) -> str:
    """Counts the invocations (each runs its own event loop) with a step in flight at once."""
    global most_invocations
    loop = id(asyncio.get_running_loop())
    with lock:
        loops_in_flight[loop] = loops_in_flight.get(loop, 0) + 1
        most_invocations = max(most_invocations, len(loops_in_flight))
    await asyncio.sleep(0.1)  # the step's work, long enough for other pollers to start theirs
    with lock:
        loops_in_flight[loop] -= 1
        if not loops_in_flight[loop]:
            del loops_in_flight[loop]
    return label


@workflow(id="slow-consumer", trigger_on_event="slow/work")
async def slow_consumer(ctx: WorkflowContext, payload: EventPayload) -> str:
    return await ctx.step.run("work", track, str(payload.data["n"]))


def test_pollers_run_one_workflows_function_concurrently() -> None:
    global most_invocations
    for faults, expected in (("shuffle", 1), ("pollers=4", 4)):
        most_invocations = 0
        with local_stack(App("slow", [slow_consumer]), aws_faults=faults, faults_seed=5) as stack:
            stack.publish("slow/work", [{"data": {"n": n}} for n in range(12)])
            stack.drain()
            runs = stack.runs("slow-consumer")
            assert len(runs) == 12 and {run["status"] for run in runs} == {"completed"}
        assert (most_invocations > 1) == (expected > 1), (faults, most_invocations)

"""A workflow redeployed between single-event and batch while its messages are queued (on moto).

No event runs twice and no old run is left ``queued``/``running``: an event a run of the old shape holds
is finished by that run (or, for a batch of several events that a single-event handler cannot resume, the
run is failed with an error saying so).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helpers.runs import index_entries
from helpers.stack import provision
from helpers.worker import Pump, publish, queue_depth
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.payloads import EventItem
from polos.publish.fanout import deliver, event_messages
from polos.runtime import batches
from polos.runtime.journal import Journal, event_run_id
from polos.runtime.records import RunRecord

WORK: Counter[int] = Counter()  # step calls per event sequence id
FAIL_FIRST: set[int] = set()  # sequence ids whose run fails on its first attempt, after its step


def work(sequence_ids: list[int]) -> list[int]:
    WORK.update(sequence_ids)
    return sequence_ids


async def handle(ctx: WorkflowContext, sequence_ids: list[int]) -> list[int]:
    done: list[int] = await ctx.step.run("work", work, sequence_ids)
    if ctx.attempt == 1 and FAIL_FIRST & set(done):
        raise RuntimeError("half-finished: fails after its step")
    return done


@workflow(id="wsc-flow", trigger_on_event="wsc/t")
async def as_single(ctx: WorkflowContext, payload: EventPayload) -> list[int]:
    return await handle(ctx, [payload.sequence_id])


async def as_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> list[int]:
    return await handle(ctx, [event.sequence_id for event in payload.events])


def as_batch_app() -> App:
    """The same workflow id redeployed as a batch workflow (another app: ids are unique per app)."""
    as_batch.__module__ = "shape_change_redeployed"
    batched = workflow(id="wsc-flow", trigger_on_event="wsc/t", batch_size=10, batch_timeout_seconds=1)
    return App("shape-batch", [batched(as_batch)])


SINGLE = App("shape-single", [as_single])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    WORK.clear()
    FAIL_FIRST.clear()
    return provision(SINGLE, tmp_path, monkeypatch)


def all_runs(events: list[EventItem]) -> list[RunRecord]:
    """The workflow's runs: those in the index, and the single-event runs of ``events`` (not indexed)."""
    indexed = [item["pk"]["S"].removeprefix("run#") for item in index_entries("wsc-flow")]
    single = [event_run_id("wsc-flow", event.topic, event.sequence_id) for event in events]
    runs = [Journal().load(run_id) for run_id in dict.fromkeys(indexed + single)]
    return [loaded.run for loaded in runs if loaded is not None]


def test_single_to_batch_finishes_old_single_runs_and_batches_the_rest(urls: dict[str, str]) -> None:
    events = publish("wsc/t", *[{"n": n} for n in range(3)])
    done, half, fresh = (event.sequence_id for event in events)
    FAIL_FIRST.add(half)
    old = Pump(SINGLE, urls)
    first = old.mapping("wsc-flow", batch_size=2).poll(wait_seconds=0, flush=True)
    assert first is not None and len(first.failed) == 1  # `done` completed; `half` journaled, then failed
    deliver(event_messages("wsc/t", [events[0]]))  # a duplicate of the finished one
    old.mapping("wsc-flow").release(first.failed)
    new = Pump(as_batch_app(), urls)  # redeployed as a batch workflow
    new.drain("wsc-flow")
    assert queue_depth(urls["wsc-flow"]) == 0
    assert {done: 1, half: 1, fresh: 1} == WORK, "no event ran twice"
    runs = all_runs(events)
    assert {run.status for run in runs} == {"completed"}
    by_type = Counter(run.trigger_type for run in runs)
    assert by_type == {"event": 2, "batch": 1}
    [batch_run] = [run for run in runs if run.trigger_type == "batch"]
    assert [ref.sequence_id for ref in batches.load_members(batch_run.run_id)] == [fresh]


def test_batch_to_single_finishes_or_fails_old_batch_runs(urls: dict[str, str]) -> None:
    events = publish("wsc/t", *[{"n": n} for n in range(5)])
    seq = [event.sequence_id for event in events]
    batch_app = as_batch_app()
    old = Pump(batch_app, urls)
    completed = old.mapping("wsc-flow", batch_size=2).poll(wait_seconds=0, flush=True)
    assert completed is not None and not completed.failed  # a batch run of seq[0:2], completed
    FAIL_FIRST.update(seq[2:])
    pair = old.mapping("wsc-flow", batch_size=2).poll(wait_seconds=0, flush=True)
    one = old.mapping("wsc-flow", batch_size=1).poll(wait_seconds=0, flush=True)
    assert pair is not None and len(pair.failed) == 2  # half-finished batch of seq[2:4]
    assert one is not None and len(one.failed) == 1  # half-finished batch of seq[4]
    deliver(event_messages("wsc/t", [events[0]]))  # a duplicate of a finished one
    for delivery in (pair, one):
        old.mapping("wsc-flow").release(delivery.failed)
    new = Pump(SINGLE, urls)  # redeployed as a single-event workflow
    new.drain("wsc-flow")
    assert queue_depth(urls["wsc-flow"]) == 0
    assert dict.fromkeys(seq, 1) == WORK, "no event ran twice"
    runs = all_runs(events)
    assert all(run.trigger_type == "batch" for run in runs) and len(runs) == 3
    statuses = {tuple(r.sequence_id for r in batches.load_members(run.run_id)): run for run in runs}
    assert statuses[tuple(seq[0:2])].status == "completed"
    assert statuses[(seq[4],)].status == "completed"  # resumed by the single-event handler
    failed = statuses[tuple(seq[2:4])]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.type == "WorkflowShapeChangedError"
    assert "became single-event" in failed.error.message

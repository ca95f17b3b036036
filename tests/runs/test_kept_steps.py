"""Issue 26: a run's completed steps are kept in its run item (``Journal.keep_step``) while it stays within
one write unit, the rest in items of their own; a kept step's write is fenced by the lease, survives a lost
answer, and shows a cancel asked for meanwhile without a read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers.stack import provision
from helpers.worker import Pump, answer_lost, count_requests, publish
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.item_size import WRITE_UNIT_BYTES, item_size
from polos.errors import RunLeaseLostError
from polos.runtime import steps
from polos.runtime.journal import RUN_SK, Acquired, Journal, event_run_id, run_pk
from polos.runtime.records import LoadedRun, StepRecord

calls: Counter[str] = Counter()


def _step(name: str, padding: int = 0) -> str:
    calls[name] += 1
    return name + "p" * padding


@workflow(id="ks-five", trigger_on_event="ks/five")
async def five(ctx: WorkflowContext, payload: Any) -> int:
    for n in range(5):
        await ctx.step.run(f"s{n}", _step, f"s{n}")
    return 5


@workflow(id="ks-many", trigger_on_event="ks/many")
async def many(ctx: WorkflowContext, payload: Any) -> int:
    for n in range(8):  # about 200 bytes each in the run item
        await ctx.step.run(f"m{n}", _step, f"m{n}", 150)
    await ctx.step.run("big", _step, "big", 2 * WRITE_UNIT_BYTES)
    await ctx.step.run("after", _step, "after")
    return 10


def _cancel_me(run_id: str) -> str:
    calls["cancel-me"] += 1
    Journal().cancel(run_id)
    return "asked"


@workflow(id="ks-cancel", trigger_on_event="ks/cancel")
async def cancel_me(ctx: WorkflowContext, payload: Any) -> str:
    await ctx.step.run("ask", _cancel_me, ctx.run_id)  # kept when the next step starts
    await ctx.step.run("next", _step, "next")  # never called: the kept write's answer shows the cancel
    return "not cancelled"


@workflow(id="ks-large-result", trigger_on_event="ks/large-result")
async def large_result(ctx: WorkflowContext, payload: Any) -> str:
    for n in range(4):  # about 150 bytes each in the run item
        await ctx.step.run(f"l{n}", _step, f"l{n}", 100)
    return "r" * 500


APP = App("kept-steps", [five, many, cancel_me, large_result])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    calls.clear()
    monkeypatch.setattr(steps, "_outcome_bytes", {})  # what earlier tests' outcomes taught this process
    return provision(APP, tmp_path, monkeypatch)


def partition(run_id: str) -> dict[str, dict[str, Any]]:
    """Every item of the run's partition, by sort key."""
    answer = settings.dynamodb().query(
        TableName=settings.get_settings().runs_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item for item in answer["Items"]}


def ran(workflow_id: str, topic: str, urls: dict[str, str]) -> tuple[str, LoadedRun]:
    [event] = publish(topic, {})
    Pump(APP, urls).drain(workflow_id)
    run_id = event_run_id(workflow_id, topic, event.sequence_id)
    loaded = Journal().load(run_id)
    assert loaded is not None
    return run_id, loaded


def test_a_run_of_five_short_steps_is_one_item_and_reads_as_five_steps(urls: dict[str, str]) -> None:
    run_id, loaded = ran("ks-five", "ks/five", urls)
    items = partition(run_id)
    assert list(items) == [RUN_SK]  # no item of a step's own
    assert item_size(items[RUN_SK]) <= WRITE_UNIT_BYTES
    assert loaded.run.status == "completed"
    assert [(s.key, s.index, s.status, s.attempts, s.result_json) for s in loaded.steps] == [
        (f"s{n}", n, "completed", 1, f'"s{n}"') for n in range(5)
    ]
    for step in loaded.steps:
        assert step.started_at.endswith("Z") and step.started_at <= step.finished_at
    assert [(a.finished_at, a.key) for a in loaded.steps] == sorted(
        (a.finished_at, a.key) for a in loaded.steps
    )
    assert calls == Counter({f"s{n}": 1 for n in range(5)})


def test_steps_past_one_write_unit_go_to_items_of_their_own_in_order(urls: dict[str, str]) -> None:
    run_id, loaded = ran("ks-many", "ks/many", urls)
    items = partition(run_id)
    kept = sorted(name.removeprefix("step#") for name in items[RUN_SK] if name.startswith("step#"))
    apart = sorted(sk.removeprefix("step#") for sk in items if sk.startswith("step#"))
    assert kept and apart, (kept, apart)  # some of each
    assert not set(kept) & set(apart)
    assert "big" in apart  # a result past the run item's write unit is never kept
    assert item_size(items[RUN_SK]) <= WRITE_UNIT_BYTES  # the outcome too stayed within one unit
    keys = [f"m{n}" for n in range(8)] + ["big", "after"]
    assert [step.key for step in loaded.steps] == keys
    assert [step.index for step in loaded.steps] == list(range(10))
    assert all(step.status == "completed" for step in loaded.steps)
    assert calls == Counter(dict.fromkeys(keys, 1))


def test_a_kept_step_whose_answer_was_lost_is_journaled_once(urls: dict[str, str]) -> None:
    """UpdateItem 1 is the lease, 2 keeps step s0: applied, its answer lost, botocore sends it again, which
    its condition refuses; the stored step is this one, so the attempt goes on."""
    [event] = publish("ks/five", {})
    with answer_lost("UpdateItem", 2) as seen, count_requests() as requests:
        Pump(APP, urls).drain("ks-five")
    assert seen[0] == requests.calls["UpdateItem"] + 1  # the lost one was sent again, and only it
    loaded = Journal().load(event_run_id("ks-five", "ks/five", event.sequence_id))
    assert loaded is not None
    assert loaded.run.status == "completed" and loaded.run.attempts == 1
    assert [step.key for step in loaded.steps] == [f"s{n}" for n in range(5)]
    assert calls == Counter({f"s{n}": 1 for n in range(5)})


def test_a_cancel_asked_while_steps_are_kept_is_seen_in_the_write_s_answer_without_a_read(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "CANCEL_CHECK_SECONDS", 0.0)  # without the answer: a read at each boundary
    reads: list[str] = []
    real = Journal.cancel_requested

    def spy(self: Journal, run_id: str) -> bool:
        reads.append(run_id)
        return real(self, run_id)

    monkeypatch.setattr(Journal, "cancel_requested", spy)
    _, loaded = ran("ks-cancel", "ks/cancel", urls)
    assert loaded.run.status == "cancelled"
    assert calls == Counter({"cancel-me": 1})
    assert [step.key for step in loaded.steps] == ["ask"]
    # one read before "ask" (nothing to see yet); "next" was stopped by the answer of the write keeping "ask"
    assert len(reads) == 1, reads


def _taken(journal: Journal, run_id: str, owner: str) -> None:
    taken = journal.acquire(
        run_id=run_id,
        workflow_id="ks-five",
        trigger_type="invoke",
        event_refs=[],
        owner=owner,
        lease_seconds=60,
    )
    assert isinstance(taken, Acquired)


def _record(key: str, result: str) -> StepRecord:
    stamp = "2026-12-07T10:00:00.000000Z"
    return StepRecord(key, 0, "completed", 1, stamp, stamp, result_json=result)


def test_a_kept_step_is_fenced_by_the_lease_and_never_overwritten(urls: dict[str, str]) -> None:
    journal = Journal()
    _taken(journal, "run_fence", "owner-a")
    assert journal.keep_step("run_fence", _record("one", '"a"'), "owner-a") is False
    journal.keep_step("run_fence", _record("one", '"a"'), "owner-a")  # the same step again: done already
    with pytest.raises(RunLeaseLostError, match="journaled by another attempt"):
        journal.keep_step("run_fence", _record("one", '"other"'), "owner-a")
    with pytest.raises(RunLeaseLostError, match="lost its lease"):  # a zombie attempt's write
        journal.keep_step("run_fence", _record("two", '"z"'), "owner-z")
    loaded = journal.load("run_fence")
    assert loaded is not None
    assert [(step.key, step.result_json) for step in loaded.steps] == [("one", '"a"')]


def test_a_workflow_whose_outcomes_are_large_stops_keeping_steps_once_one_was_seen(
    urls: dict[str, str],
) -> None:
    """Its first run keeps steps with room for a short outcome; its 500-byte result then takes the run item
    past one write unit (its outcome costs 2). The process remembers that outcome: the next run leaves room
    for it, so its outcome (and every write) costs one unit again."""
    first_id, first = ran("ks-large-result", "ks/large-result", urls)
    second_id, second = ran("ks-large-result", "ks/large-result", urls)
    assert first.run.status == second.run.status == "completed"
    first_items, second_items = partition(first_id), partition(second_id)
    assert any(name.startswith("step#") for name in first_items[RUN_SK])
    assert item_size(first_items[RUN_SK]) > WRITE_UNIT_BYTES
    assert item_size(second_items[RUN_SK]) <= WRITE_UNIT_BYTES
    assert [step.key for step in second.steps] == [f"l{n}" for n in range(4)]
    assert steps.outcome_reserve("ks-large-result") > steps.OUTCOME_RESERVE_BYTES

"""The run journal on moto: layout, lease, conditional writes, TTL, pagination."""

import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.worker import answer_lost
from polos import workflow
from polos.app import App
from polos.aws import settings
from polos.aws.item_size import item_size
from polos.context import WorkflowContext
from polos.errors import RunLeaseLostError
from polos.runtime import journal as journal_module
from polos.runtime.journal import (
    Acquired,
    Journal,
    NotAcquired,
    decode_run,
    encode_run,
    run_pk,
)
from polos.runtime.records import ErrorInfo, EventRef, RunRecord, StepRecord


@workflow(id="journal-probe")
async def journal_probe(ctx: WorkflowContext) -> None:
    return None


@pytest.fixture
def journal(provision_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv(settings.ENV_RETENTION_DAYS, "2")
    provision_app(App("journal-tests", [journal_probe]))
    return Journal()


def raw_item(journal: Journal, run_id: str, sk: str = "run") -> dict[str, dict[str, str]]:
    answer = settings.dynamodb().get_item(
        TableName=journal.table, Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return answer.get("Item", {})  # type: ignore[return-value]


def acquire(
    journal: Journal, run_id: str, owner: str = "o1", now: float | None = None, **extra: object
) -> object:
    options: dict[str, object] = {
        "workflow_id": "journal-probe",
        "trigger_type": "event",
        "event_refs": [EventRef("a/b", 1, "evt_1")],
        "owner": owner,
        "lease_seconds": 60,
        **extra,
    }
    return journal.acquire(run_id=run_id, now=now, **options)  # type: ignore[arg-type]


def step(key: str, index: int, status: str = "completed", result: str | None = "1") -> StepRecord:
    return StepRecord(key, index, status, 1, "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", result)  # type: ignore[arg-type]


def test_table_name_comes_from_the_environment(journal: Journal) -> None:
    assert journal.table == settings.get_settings().runs_table == "test-RunsTable"


def test_first_acquire_creates_the_run_item(journal: Journal) -> None:
    taken = acquire(journal, "r1")
    assert isinstance(taken, Acquired)
    run = taken.run
    assert (run.run_id, run.workflow_id, run.status, run.attempts, run.trigger_type) == (
        "r1",
        "journal-probe",
        "running",
        1,
        "event",
    )
    assert run.event_refs == [EventRef("a/b", 1, "evt_1")]
    assert run.lease_owner == "o1" and run.lease_until is not None and run.lease_until > time.time() + 50
    assert run.created_at.endswith("Z") and run.created_at == run.updated_at
    item = raw_item(journal, "r1")
    # A single-event run is not in the by_workflow index (its event lists it): its workflow in ``wid``.
    assert "wf" not in item and item["wid"] == {"S": "journal-probe"} and "created_at" in item


def test_a_live_lease_keeps_other_attempts_out(journal: Journal) -> None:
    acquire(journal, "r1", owner="first")
    second = acquire(journal, "r1", owner="second")
    assert isinstance(second, NotAcquired) and second.outcome == "busy"
    assert second.run.lease_owner == "first" and second.run.attempts == 1


def test_a_lapsed_lease_can_be_taken_over(journal: Journal) -> None:
    first = acquire(journal, "r1", owner="first")
    assert isinstance(first, Acquired) and first.run.lease_until is not None
    later = acquire(
        journal, "r1", owner="second", now=first.run.lease_until + 1, event_refs=[EventRef("x", 9, "e")]
    )
    assert isinstance(later, Acquired)
    assert later.run.lease_owner == "second" and later.run.attempts == 2
    assert later.run.created_at == first.run.created_at
    assert later.run.event_refs == [EventRef("a/b", 1, "evt_1")]  # set once, never replaced
    with pytest.raises(RunLeaseLostError):
        journal.finish("r1", "first", "completed", result_json="1")  # the old holder cannot finish


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_finished_runs_are_never_acquired_again(journal: Journal, status: str) -> None:
    acquire(journal, "r1")
    journal.finish("r1", "o1", status, result_json="1" if status == "completed" else None)  # type: ignore[arg-type]
    again = acquire(journal, "r1", owner="o2", now=time.time() + 10_000)
    assert isinstance(again, NotAcquired) and again.outcome == "finished"
    assert again.run.status == status and again.run.attempts == 1


def test_finish_records_the_outcome_and_clears_the_lease(journal: Journal) -> None:
    acquire(journal, "r1")
    journal.finish("r1", "o1", "queued", error=ErrorInfo("ValueError", "bad"))
    item = raw_item(journal, "r1")
    assert item["status"] == {"S": "queued"}
    assert "lease_owner" not in item and "lease_until" not in item
    assert ErrorInfo.from_json(item["error"]["S"]) == ErrorInfo("ValueError", "bad")
    retry = acquire(journal, "r1", owner="o2")  # a queued run is taken at once
    assert isinstance(retry, Acquired) and retry.run.attempts == 2
    journal.finish("r1", "o2", "completed", result_json='{"ok":true}')
    item = raw_item(journal, "r1")
    assert item["status"] == {"S": "completed"} and item["result"] == {"S": '{"ok":true}'}
    assert "error" not in item  # the earlier attempt's error is gone once the run completes


def test_a_finish_applied_whose_answer_was_lost_counts_as_done_and_reports_the_cancel(
    journal: Journal,
) -> None:
    """botocore's retry of the finish is refused by its own condition (the lease is released): the item
    it returns is this very write, so the attempt goes on; the cancel asked for meanwhile is still seen."""
    acquire(journal, "r1")
    journal.cancel("r1")  # running: only asks
    with answer_lost("UpdateItem", 1) as seen:
        asked = journal.finish("r1", "o1", "waiting", waiting_for_json='{"step":"w"}', attempts=1)
    assert seen[0] == 2 and asked
    assert raw_item(journal, "r1")["status"] == {"S": "waiting"}


@pytest.mark.parametrize("later", ["retried", "queued-for-a-slot"])
def test_a_later_attempts_finish_is_never_taken_for_ours_even_with_the_same_stamp(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, later: str
) -> None:
    """The holder ``a`` lost its lease; ``b`` took it and ended it ``queued`` as ``a`` would, at the same
    microsecond (clocks agree): ``a``'s finish is refused still, by the count of attempts (``b`` executed)
    or by what the run waits for (``b`` gave its count back, queued for a slot)."""
    monkeypatch.setattr(journal_module, "now_iso", lambda: "2026-01-01T00:00:00.000000Z")
    first = acquire(journal, "r1", owner="a")
    assert isinstance(first, Acquired) and first.run.lease_until is not None
    assert isinstance(acquire(journal, "r1", owner="b", now=first.run.lease_until + 1), Acquired)
    if later == "retried":
        journal.finish("r1", "b", "queued", attempts=2)
    else:
        slot = '{"step":"","kind":"concurrency","queue":"q"}'
        journal.finish("r1", "b", "queued", waiting_for_json=slot, unexecuted=True, attempts=2)
    before = raw_item(journal, "r1")
    with pytest.raises(RunLeaseLostError):
        journal.finish("r1", "a", "queued", attempts=1)
    assert raw_item(journal, "r1") == before


def test_a_lease_taken_whose_answer_was_lost_is_held(journal: Journal) -> None:
    with answer_lost("UpdateItem", 1) as seen:
        taken = acquire(journal, "r1")
    assert seen[0] == 2
    assert isinstance(taken, Acquired) and taken.run.lease_owner == "o1" and taken.run.attempts == 1


def test_finish_without_the_lease_writes_nothing(journal: Journal) -> None:
    acquire(journal, "r1")
    before = raw_item(journal, "r1")
    with pytest.raises(RunLeaseLostError, match=r"run r1: this attempt lost its lease"):
        journal.finish("r1", "someone-else", "completed", result_json="1")
    assert raw_item(journal, "r1") == before


def test_create_queued_stores_once(journal: Journal) -> None:
    run = RunRecord(
        "inv1", "journal-probe", "queued", 0, "invoke", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"
    )
    run.payload_json = '{"n":1}'
    assert journal.create_queued(run) == run
    other = RunRecord(
        "inv1", "journal-probe", "queued", 0, "invoke", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"
    )
    other.payload_json = '{"n":2}'
    existing = journal.create_queued(other)
    assert existing.payload_json == '{"n":1}' and existing.created_at == "2025-01-01T00:00:00Z"
    taken = acquire(journal, "inv1", trigger_type="invoke", event_refs=[])
    assert isinstance(taken, Acquired)
    assert (taken.run.attempts, taken.run.trigger_type, taken.run.payload_json) == (1, "invoke", '{"n":1}')


def test_steps_load_in_first_call_order_with_one_query(journal: Journal) -> None:
    acquire(journal, "r1")
    for index, key in enumerate(["zeta", "alpha", "mid"]):
        journal.record_step("r1", step(key, index, result=str(index)))
    queries: list[str] = []
    settings.dynamodb().meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: queries.append(model.name)
    )
    loaded = journal.load("r1")
    assert queries == ["Query"]
    assert loaded is not None and loaded.run.run_id == "r1"
    assert [(s.key, s.index, s.result_json) for s in loaded.steps] == [
        ("zeta", 0, "0"),
        ("alpha", 1, "1"),
        ("mid", 2, "2"),
    ]
    assert journal.load("unknown") is None


def test_a_completed_step_is_never_overwritten(journal: Journal) -> None:
    journal.record_step("r1", step("s", 0, result='"first"'))
    with pytest.raises(RunLeaseLostError, match=r"step 's' of run r1 was journaled by another attempt"):
        journal.record_step("r1", step("s", 0, result='"second"'))
    assert raw_item(journal, "r1", "step#s")["result"] == {"S": '"first"'}


@pytest.mark.parametrize("result", ['"small"', '"' + "x" * 20_000 + '"'], ids=["inline", "apart"])
def test_a_step_write_retried_after_its_answer_was_lost_is_not_another_attempts(
    journal: Journal, result: str
) -> None:
    done = step("s", 0, result=result)
    journal.record_step("r1", done)
    journal.record_step("r1", done)  # the same write again (botocore's retry of one that was applied)
    stored = journal.get_step("r1", "s")
    assert stored is not None and stored.result_json == result


def test_a_fenced_step_write_whose_answer_was_lost_is_this_attempts(journal: Journal) -> None:
    acquire(journal, "r1")
    done = step("s", 0, result='"fenced"')
    with answer_lost("TransactWriteItems", 1) as seen:  # the retry: the lease is ours, the step is written
        journal.record_step("r1", done, fence_owner="o1")
    assert seen[0] == 2
    stored = journal.get_step("r1", "s")
    assert stored is not None and stored.result_json == '"fenced"'


def test_a_failed_step_may_be_replaced(journal: Journal) -> None:
    failed = StepRecord("s", 0, "failed", 3, "t0", "t1", error=ErrorInfo("RuntimeError", "boom"))
    journal.record_step("r1", failed)
    journal.record_step("r1", step("s", 0, result="5"))
    item = raw_item(journal, "r1", "step#s")
    assert item["status"] == {"S": "completed"} and item["result"] == {"S": "5"} and "error" not in item


def test_items_carry_a_ttl(journal: Journal) -> None:
    acquire(journal, "r1")
    journal.record_step("r1", step("s", 0))
    expected = time.time() + 2 * 86_400
    for sk in ("run", "step#s"):
        expires = float(raw_item(journal, "r1", sk)["expires_at"]["N"])
        assert expected - 60 < expires < expected + 60, sk
    ttl = settings.dynamodb().describe_time_to_live(TableName=journal.table)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "expires_at"


def test_steps_are_not_in_the_by_workflow_index(journal: Journal) -> None:
    acquire(journal, "r1")
    journal.record_step("r1", step("s", 0))
    assert "wf" not in raw_item(journal, "r1", "step#s")


def test_loading_pages_past_one_megabyte(journal: Journal) -> None:
    acquire(journal, "big")
    blob = '"' + "x" * 340_000 + '"'
    for index in range(4):  # about 1.36 MB in one partition
        journal.record_step("big", step(f"s{index}", index, result=blob))
    queries: list[str] = []
    settings.dynamodb().meta.events.register(
        "before-call.dynamodb.Query", lambda model, **_: queries.append(model.name)
    )
    loaded = journal.load("big")
    assert loaded is not None and [s.key for s in loaded.steps] == ["s0", "s1", "s2", "s3"]
    assert all(s.result_json == blob for s in loaded.steps)
    assert len(queries) >= 2


def test_run_record_encoding_round_trip() -> None:
    run = RunRecord(
        run_id="r9",
        workflow_id="wf",
        status="failed",
        attempts=3,
        trigger_type="batch",
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-01-01T00:00:05Z",
        event_refs=[EventRef("t", 1, "e1"), EventRef("t", 2, "e2")],
        payload_json='{"a":1}',
        result_json=None,
        error=ErrorInfo("ValueError", "nope"),
        lease_owner="me",
        lease_until=1234.5,
    )
    item = encode_run(run, expires_at=99)
    assert item["expires_at"] == {"N": "99"}
    decoded = decode_run(item)
    assert decoded == run
    assert decoded.item_bytes == item_size(item) > 0


def test_error_messages_are_bounded() -> None:
    info = ErrorInfo.of(ValueError("x" * 100_000))
    assert (
        info.type == "ValueError" and len(info.message) < 4100 and info.message.endswith("more characters)")
    )

"""Batch workflows fed by real SQS messages (moto): each event lands in exactly one batch run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from helpers.runs import index_entries
from helpers.stack import provision
from helpers.worker import (
    Pump,
    answer_lost,
    atomic_dynamodb,
    count_requests,
    dlq_url,
    publish,
    queue_depth,
)
from polos import BatchEventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.payloads import EventItem
from polos.publish.fanout import deliver, event_messages
from polos.runtime import batches
from polos.runtime.journal import Journal
from polos.runtime.records import EventRef
from polos.runtime.worker import ref_of

MAX_ATTEMPTS = 2
seen: list[list[int]] = []  # the sequence ids each call of a batch step got
failing: set[str] = set()


def collect(sequence_ids: list[int]) -> list[int]:
    seen.append(sequence_ids)
    return sequence_ids


@workflow(id="wb-batch", trigger_on_event="wb/batch", batch_size=10, batch_timeout_seconds=5)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> dict[str, Any]:
    got = await ctx.step.run("collect", collect, [event.sequence_id for event in payload.events])
    if "wb-batch" in failing:
        raise RuntimeError(f"batch failed on attempt {ctx.attempt}")
    return {"count": len(got)}


@workflow(id="wb-poison", trigger_on_event="wb/poison", batch_size=5, batch_timeout_seconds=1)
async def poison(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    raise RuntimeError(f"poisoned batch of {len(payload.events)}, attempt {ctx.attempt}")


APP = App("worker-batches", [batch, poison])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(MAX_ATTEMPTS))
    seen.clear()
    failing.clear()
    urls = provision(APP, tmp_path, monkeypatch, max_attempts=MAX_ATTEMPTS)
    with atomic_dynamodb():
        yield urls


@pytest.fixture
def pump(urls: dict[str, str]) -> Pump:
    return Pump(APP, urls)


def receive_all(url: str) -> list[Any]:
    answer = settings.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return list(answer.get("Messages", []))


def event_in(message: Any) -> EventItem:
    from polos.publish.messages import WorkflowMessage

    event = WorkflowMessage.from_json(message["Body"]).event
    assert event is not None
    return event


def runs_of(workflow_id: str) -> dict[str, tuple[str, int, list[int]]]:
    """Every run of the workflow: run id → (status, attempts, member sequence ids)."""
    items = index_entries(workflow_id)
    runs = {}
    for item in items:
        run_id = item["pk"]["S"].removeprefix("run#")
        loaded = Journal().load(run_id)
        assert loaded is not None
        members = [ref.sequence_id for ref in batches.load_members(run_id)]
        runs[run_id] = (loaded.run.status, loaded.run.attempts, members)
    return runs


def assert_each_event_in_exactly_one_run(workflow_id: str, events: list[EventItem]) -> dict[int, str]:
    """Members of all runs partition the events, and every claim names the run listing the event."""
    owner: dict[int, str] = {}
    for run_id, (_, _, members) in runs_of(workflow_id).items():
        for sequence_id in members:
            assert sequence_id not in owner, (
                f"event {sequence_id} is in runs {owner[sequence_id]} and {run_id}"
            )
            owner[sequence_id] = run_id
    assert sorted(owner) == sorted(event.sequence_id for event in events)
    claims = batches.read_claims(workflow_id, [ref_of(event) for event in events])
    assert {ref.sequence_id: run_id for ref, run_id in claims.items()} == owner
    return owner


def test_ten_events_make_one_batch_run_in_sequence_order(pump: Pump, urls: dict[str, str]) -> None:
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    delivery = pump.once("wb-batch")
    assert delivery is not None and len(delivery.messages) == 10 and not delivery.failed
    [(run_id, (status, attempts, members))] = runs_of("wb-batch").items()
    assert (status, attempts) == ("completed", 1)
    assert members == [event.sequence_id for event in events] == seen[0]
    loaded = Journal().load(run_id)
    assert (
        loaded is not None and loaded.run.trigger_type == "batch" and loaded.run.result_json == '{"count":10}'
    )
    assert_each_event_in_exactly_one_run("wb-batch", events)
    assert queue_depth(urls["wb-batch"]) == 0


def test_failed_batch_resumes_under_its_run_id_when_redelivered_in_other_groupings(
    pump: Pump, urls: dict[str, str]
) -> None:
    url = urls["wb-batch"]
    events = publish("wb/batch", *[{"n": n} for n in range(6)])
    failing.add("wb-batch")
    first = pump.once("wb-batch", batch_size=4, redeliver=False)
    assert first is not None and len(first.failed) == 4
    [(failed_run, (status, attempts, members))] = runs_of("wb-batch").items()
    assert (status, attempts) == ("queued", 1)
    in_first = sorted(event_in(m).sequence_id for m in first.messages)
    assert members == in_first
    failing.clear()
    pump.mapping("wb-batch").release(first.failed)
    messages = receive_all(url)
    assert len(messages) == 6
    old = [m for m in messages if event_in(m).sequence_id in in_first]
    new = [m for m in messages if event_in(m).sequence_id not in in_first]
    # SQS regroups: two of the failed batch's events with one new event, then the rest.
    mapping = pump.mapping("wb-batch")
    for group in ([*old[:2], new[0]], [*old[2:], new[1]]):
        delivery = mapping.deliver(group)
        assert not delivery.failed
    runs = runs_of("wb-batch")
    assert runs[failed_run] == ("completed", 2, in_first)
    assert sorted(members for _, _, members in runs.values()) == sorted(
        [in_first, [event_in(new[0]).sequence_id], [event_in(new[1]).sequence_id]]
    )
    # The failed batch's step ran once (attempt 1 journaled it); its replay saw the same events in order.
    assert seen.count(in_first) == 1
    assert_each_event_in_exactly_one_run("wb-batch", events)
    assert queue_depth(url) == 0


def test_events_claimed_meanwhile_by_another_run_are_left_to_it(
    pump: Pump, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = publish("wb/batch", *[{"n": n} for n in range(4)])
    messages = receive_all(urls["wb-batch"])
    by_seq = {event_in(m).sequence_id: m for m in messages}
    mapping = pump.mapping("wb-batch")
    first = mapping.deliver([by_seq[s] for s in sorted(by_seq)[:3]])
    assert not first.failed
    [(first_run, _)] = runs_of("wb-batch").items()
    # The second worker read the claims before the first one's transaction committed: it saw none.
    monkeypatch.setattr(batches, "read_owners", lambda workflow_id, refs: batches.Owners())
    deliver(event_messages("wb/batch", events[1:3]))  # SQS delivers the second and third events again
    again = [*receive_all(urls["wb-batch"]), by_seq[events[3].sequence_id]]
    assert len(again) == 3
    second = mapping.deliver(again)
    assert not second.failed
    monkeypatch.undo()
    runs = runs_of("wb-batch")
    assert runs[first_run] == ("completed", 1, [e.sequence_id for e in events[:3]])
    [other] = [run_id for run_id in runs if run_id != first_run]
    assert runs[other] == ("completed", 1, [events[3].sequence_id])
    assert_each_event_in_exactly_one_run("wb-batch", events)


def test_a_crash_between_chunks_leaves_the_later_events_for_a_new_run(
    pump: Pump, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "MAX_CLAIMS_PER_TRANSACTION", 4)
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    transactions = 0

    def crash_on_second_transaction(**_: Any) -> None:
        nonlocal transactions
        transactions += 1
        if transactions == 2:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    hooks = settings.dynamodb().meta.events
    hooks.register("before-call.dynamodb.TransactWriteItems", crash_on_second_transaction)
    try:
        first = pump.once("wb-batch", redeliver=False)
    finally:
        hooks.unregister("before-call.dynamodb.TransactWriteItems", crash_on_second_transaction)
    assert first is not None and len(first.messages) == 10
    sequence_ids = [event.sequence_id for event in events]
    # The first chunk's run has its four events and ran; the other six stayed unclaimed, left for SQS.
    assert sorted(event_in(m).sequence_id for m in first.failed) == sequence_ids[4:]
    [state] = runs_of("wb-batch").values()
    assert state == ("completed", 1, sequence_ids[:4])
    pump.mapping("wb-batch").release(first.failed)
    second = pump.once("wb-batch")
    assert second is not None and len(second.messages) == 6 and not second.failed
    owners = assert_each_event_in_exactly_one_run("wb-batch", events)
    assert len(set(owners.values())) == 2
    assert seen == [sequence_ids[:4], sequence_ids[4:]]
    assert queue_depth(urls["wb-batch"]) == 0


def test_a_claim_transaction_applied_but_unanswered_keeps_its_events_in_the_payload(
    pump: Pump, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "MAX_CLAIMS_PER_TRANSACTION", 4)
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    # The 2nd claim transaction is applied, its answer lost; botocore sends it again (the member item and
    # the claims exist by then), and the 3rd goes through.
    with answer_lost("TransactWriteItems", 2) as seen_calls:
        delivery = pump.once("wb-batch", redeliver=False)
    assert seen_calls[0] >= 3
    assert delivery is not None and len(delivery.messages) == 10 and not delivery.failed
    sequence_ids = [event.sequence_id for event in events]
    [(run_id, state)] = runs_of("wb-batch").items()
    assert state == ("completed", 1, sequence_ids)
    assert seen == [sequence_ids], "the payload is the run's membership: every claimed event"
    assert set(assert_each_event_in_exactly_one_run("wb-batch", events).values()) == {run_id}
    assert queue_depth(urls["wb-batch"]) == 0


def test_claim_transactions_carry_a_client_request_token_derived_from_run_and_chunk(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "MAX_CLAIMS_PER_TRANSACTION", 2)
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 5)]
    tokens: list[str] = []

    def token_of(params: dict[str, Any], **_: Any) -> None:
        tokens.append(params["ClientRequestToken"])

    hooks = settings.dynamodb().meta.events
    hooks.register("before-parameter-build.dynamodb.TransactWriteItems", token_of)
    try:
        batches.create_batch_run("wb-batch", "run_tokens", refs, "owner-1")
    finally:
        hooks.unregister("before-parameter-build.dynamodb.TransactWriteItems", token_of)
    assert len(tokens) == 2 and len(set(tokens)) == 2 and all(len(t) <= 36 for t in tokens)
    assert tokens[0] == batches.claim_token("run_tokens", 0, refs[:2], 0)


def test_a_batch_run_claims_its_events_in_transactions_of_at_most_100_actions(urls: dict[str, str]) -> None:
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 101)]
    with count_requests() as requests:
        created = batches.create_batch_run("wb-batch", "run_chunks", refs, "owner-1")
    assert requests.calls["TransactWriteItems"] == 2
    assert requests.written_items == 1 + 2 + 100  # the run, two member chunks, a claim per event
    assert created.members == refs and not created.taken and not created.unclaimed
    items = Journal().query_partition("run_chunks")
    assert [item["sk"]["S"] for item in items] == ["member#0000", "member#0001", "run"]
    assert batches.members(items) == refs
    assert set(batches.read_claims("wb-batch", refs).values()) == {"run_chunks"}
    loaded = Journal.decode_partition(items)
    assert loaded is not None and (loaded.run.status, loaded.run.lease_owner) == ("running", "owner-1")


def test_poison_batch_fails_its_run_after_max_attempts_and_reaches_the_dlq(
    pump: Pump, urls: dict[str, str]
) -> None:
    events = publish("wb/poison", *[{"n": n} for n in range(3)])
    deliveries = pump.drain("wb-poison")
    assert [len(d.failed) for d in deliveries] == [3] * (MAX_ATTEMPTS - 1) + [0]
    [(run_id, state)] = runs_of("wb-poison").items()
    assert state == ("failed", MAX_ATTEMPTS, [e.sequence_id for e in events])
    loaded = Journal().load(run_id)
    assert loaded is not None and loaded.run.error is not None
    assert loaded.run.error.message == f"poisoned batch of 3, attempt {MAX_ATTEMPTS}"
    assert queue_depth(dlq_url(urls["wb-poison"])) == 3
    assert queue_depth(urls["wb-poison"]) == 0


def test_a_transaction_conflict_is_retried(urls: dict[str, str]) -> None:
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 4)]
    calls = 0

    def conflict_once(params: dict[str, Any], **_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            reasons = [{"Code": "None"}] * 2 + [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * 2
            error = {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}
            raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]

    hooks = settings.dynamodb().meta.events
    hooks.register("before-call.dynamodb.TransactWriteItems", conflict_once)
    try:
        created = batches.create_batch_run("wb-batch", "run_conflict", refs, "owner-1")
    finally:
        hooks.unregister("before-call.dynamodb.TransactWriteItems", conflict_once)
    assert calls == 2
    assert created.members == refs and not created.taken and not created.unclaimed
    assert set(batches.read_claims("wb-batch", refs).values()) == {"run_conflict"}


def test_member_refs_round_trip() -> None:
    refs = [EventRef("a/b", 2, "evt_2"), EventRef("a/b", 1, "evt_1")]
    item = batches.member_item("run_x", 0, refs, 0)
    assert batches.members([item, {"pk": {"S": "run#run_x"}, "sk": {"S": "run"}}]) == sorted(refs)

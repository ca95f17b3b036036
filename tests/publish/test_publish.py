"""Publishing: sequence ids, client ids, Idempotency-Key, listing, request counts, ``publish_event``."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from fanapp import SUBSCRIBERS, TOPIC, provision_fan_app
from helpers.aws_calls import count_calls
from helpers.aws_state import drain, snapshot
from polos.aws import settings
from polos.errors import NonRetryableError
from polos.payloads import EventItem
from polos.publish.events import EventStore
from polos.publish.idempotency import IdempotencyConflictError
from polos.publish.messages import WorkflowMessage
from polos.publish.publishing import NewEvent, publish_events
from polos.runtime.journal import Journal
from polos.runtime.records import EventRef, RunRecord
from polos.runtime.steps import StepRunner


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision_fan_app(tmp_path, monkeypatch)


def events(count: int, start: int = 0, **fields: Any) -> list[NewEvent]:
    return [NewEvent(id=None, data={"n": start + i}, **fields) for i in range(count)]


def delivered(queue_url: str) -> list[EventItem]:
    messages = [WorkflowMessage.from_json(body) for body in drain(queue_url)]
    assert all(message.kind == "event" and message.event is not None for message in messages)
    return [message.event for message in messages if message.event is not None]


def test_sequence_ids_are_consecutive_per_canonical_topic(queues: dict[str, str]) -> None:
    first = publish_events("fan.out", events(3))
    second = publish_events("fan/out", events(2, start=3), idempotency_key=None)
    other = publish_events("other/topic", events(2))
    assert first.response["sequence_ids"] == [1, 2, 3]
    assert second.response["sequence_ids"] == [4, 5]
    assert other.response["sequence_ids"] == [1, 2]
    assert [e.data["n"] for e in first.events + second.events] == [0, 1, 2, 3, 4]
    assert {e.topic for e in first.events} == {TOPIC}
    assert len({e.id for e in first.events + second.events}) == 5
    assert all(e.id.startswith("evt_") for e in first.events)
    assert first.response["events"][0] == {"id": first.events[0].id, "sequence_id": 1, "topic": TOPIC}
    assert first.response["created_at"].endswith("Z")
    for workflow_id in SUBSCRIBERS:
        assert [e.sequence_id for e in delivered(queues[workflow_id])] == [1, 2, 3, 4, 5]
    assert [e.data for e in delivered(queues["fan-other"])] == [{"n": 0}, {"n": 1}]


def test_client_given_ids_are_stored_once_and_delivered_again(queues: dict[str, str]) -> None:
    first = publish_events(TOPIC, [NewEvent(id="order-1", data={"v": 1}, event_type="created")])
    again = publish_events(
        TOPIC,
        [
            NewEvent(id=None, data={"v": "new"}),
            NewEvent(id="order-1", data={"v": 2}),
            NewEvent(id=None, data={}),
        ],
    )
    assert first.response["sequence_ids"] == [1]
    # The repeated id answers with the stored event; the new events still get consecutive sequence ids.
    assert again.response["sequence_ids"] == [2, 1, 3]
    assert again.events[1] == first.events[0]
    assert again.events[1].data == {"v": 1} and again.events[1].event_type == "created"
    page = EventStore().list_topic(TOPIC, 0, 100)
    assert [(e.id, e.sequence_id) for e in page.events].count(("order-1", 1)) == 1
    assert len(page.events) == 3
    for workflow_id in SUBSCRIBERS:
        ids = [e.id for e in delivered(queues[workflow_id])]
        assert ids.count("order-1") == 2  # at-least-once: re-sent for a client that retries without a key
        assert len(ids) == 4


def test_a_client_id_claimed_between_lookup_and_write_answers_with_the_stored_event(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = publish_events(TOPIC, [NewEvent(id="race", data={"who": "winner"})])
    monkeypatch.setattr(EventStore, "find_claimed", lambda self, topic, ids: {})  # the lookup missed it
    loser = publish_events(TOPIC, [NewEvent(id="race", data={"who": "loser"}), NewEvent(id="fresh", data={})])
    assert loser.events[0] == winner.events[0]
    assert loser.response["events"][0] == {"id": "race", "sequence_id": 1, "topic": TOPIC}
    assert loser.response["sequence_ids"] == [1, 3]  # 2 was reserved for the lost race: a gap, never reused
    stored = EventStore().list_topic(TOPIC, 0, 100).events
    assert [(e.id, e.sequence_id, e.data) for e in stored] == [
        ("race", 1, {"who": "winner"}),
        ("fresh", 3, {}),
    ]


def test_a_keyed_publish_whose_client_id_was_taken_meanwhile_keeps_its_final_answer_for_replays(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = publish_events(TOPIC, [NewEvent(id="race", data={"who": "winner"})])
    monkeypatch.setattr(EventStore, "find_claimed", lambda self, topic, ids: {})  # the lookup missed it
    body = [NewEvent(id="race", data={"who": "loser"}), NewEvent(id=None, data={})]
    first = publish_events(TOPIC, body, idempotency_key="race-key")
    assert first.response["sequence_ids"] == [1, 3]
    record = settings.dynamodb().get_item(
        TableName=settings.get_settings().idempotency_table, Key={"pk": {"S": "publish#race-key"}}
    )["Item"]
    assert record["status"]["S"] == "completed"  # the plan changed (2 is a gap): its final form is kept
    with count_calls() as calls:
        again = publish_events(TOPIC, body, idempotency_key="race-key")
    assert again.response == first.response and again.events[0] == winner.events[0]
    assert calls["sqs"] == 0 and calls["dynamodb.UpdateItem"] == 0  # answered from the record


def test_same_idempotency_key_and_body_answers_the_first_response_and_stores_nothing(
    queues: dict[str, str],
) -> None:
    body = [NewEvent(id=None, data={"k": i}) for i in range(3)] + [NewEvent(id="c-1", data={"k": "c"})]
    first = publish_events(TOPIC, body, idempotency_key="key-1")
    sent = {workflow_id: [e.id for e in delivered(queues[workflow_id])] for workflow_id in SUBSCRIBERS}
    tables = {name: rows for name, rows in snapshot().items() if name.startswith("table:")}
    with count_calls() as calls:
        again = publish_events(TOPIC, body, idempotency_key="key-1")
    assert again.response == first.response
    assert again.events == first.events
    assert {name: rows for name, rows in snapshot().items() if name.startswith("table:")} == tables
    assert calls["dynamodb.PutItem"] + calls["dynamodb.UpdateItem"] + calls["dynamodb.BatchWriteItem"] == 0
    # Whether the first attempt sent them is not recorded (that would cost every publish a write): sent
    # again, the same events, whose runs exist already.
    assert {wf: [e.id for e in delivered(queues[wf])] for wf in SUBSCRIBERS} == sent


def test_a_keyed_publish_writes_its_key_once(queues: dict[str, str]) -> None:
    with count_calls() as calls:
        publish_events(TOPIC, events(10), idempotency_key="key-once")
    assert calls["dynamodb.PutItem"] == 1  # the claim; no completion
    record = settings.dynamodb().get_item(
        TableName=settings.get_settings().idempotency_table, Key={"pk": {"S": "publish#key-once"}}
    )["Item"]
    assert record["status"]["S"] == "pending"


def test_a_different_body_under_the_same_key_is_a_conflict(queues: dict[str, str]) -> None:
    publish_events(TOPIC, events(1), idempotency_key="key-2")
    before = snapshot()
    with pytest.raises(IdempotencyConflictError):
        publish_events(TOPIC, events(1, start=7), idempotency_key="key-2")
    with pytest.raises(IdempotencyConflictError):
        publish_events("other/topic", events(1), idempotency_key="key-2")
    assert snapshot() == before


def test_listing_pages_through_a_topic_in_sequence_order(queues: dict[str, str]) -> None:
    publish_events(TOPIC, events(7))
    store = EventStore()
    pages, after = [], 0
    while True:
        page = store.list_topic(TOPIC, after, 3)
        pages.append([e.sequence_id for e in page.events])
        if page.next_after_sequence_id is None:
            break
        after = page.next_after_sequence_id
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    exact = store.list_topic(TOPIC, 4, 3)
    assert ([e.sequence_id for e in exact.events], exact.next_after_sequence_id) == ([5, 6, 7], None)
    assert store.list_topic(TOPIC, 7, 3).events == []
    assert store.list_topic("no/such/topic", 0, 3).events == []


def test_get_many_returns_events_in_ref_order_and_skips_missing(queues: dict[str, str]) -> None:
    stored = publish_events("nobody/listens", events(120)).events
    refs = [EventRef(e.topic, e.sequence_id, e.id) for e in reversed(stored)]
    refs.insert(5, EventRef("nobody/listens", 999, "evt_gone"))
    got = EventStore().get_many(refs + refs[:2])
    assert got == list(reversed(stored)) + list(reversed(stored))[:2]


def test_request_counts_100_events_3_subscribers(queues: dict[str, str]) -> None:
    with count_calls() as calls:
        publish_events(TOPIC, events(100))
    print(
        f"100 events, 3 subscribers: {calls['dynamodb']} DynamoDB, {calls['sqs']} SQS requests {dict(calls)}"
    )
    assert calls["dynamodb"] <= 6
    assert calls["sqs"] <= 30
    assert calls["dynamodb.BatchWriteItem"] == 4 and calls["sqs.SendMessageBatch"] == 30


@pytest.mark.parametrize("count", [1, 26, 1000])
def test_dynamodb_requests_stay_within_ceil_n_over_25_plus_2(queues: dict[str, str], count: int) -> None:
    with count_calls() as calls:  # a topic nobody subscribes to: moto's SQS slows down with deep queues
        publish_events("nobody/listens", events(count))
    print(f"{count} events: {calls['dynamodb']} DynamoDB requests")
    assert calls["dynamodb"] <= math.ceil(count / 25) + 2
    assert calls["sqs"] == 0


def test_request_counts_with_idempotency_key_and_client_ids(queues: dict[str, str]) -> None:
    with count_calls() as calls:
        publish_events(TOPIC, [NewEvent(id=f"c{i}", data={}) for i in range(60)], idempotency_key="counted")
    print(f"60 client-id events with a key: {dict(calls)}")
    # key read 1 + id lookup 1 (+ 1 for ids not found there: claims stored before one key per claim are
    # still read) + reserve 1 + key claim 1 + 2 transactions (50 + 10); the key is not completed
    assert calls["dynamodb"] == 7
    assert calls["sqs"] == 3 * 6


def run_publish_step(run_id: str, journal: Journal) -> EventItem:
    """One attempt of a run whose only step publishes an event (the journal's steps replayed)."""
    now = "2025-01-01T00:00:00Z"
    journal.create_queued(RunRecord(run_id, "publisher", "queued", 0, "invoke", now, now))
    loaded = journal.load(run_id)
    assert loaded is not None
    runner = StepRunner(run_id=run_id, journal=journal, steps=loaded.steps, lease_until=time.time() + 900)
    event = asyncio.run(
        runner.publish_event("announce", "fan.out", {"user": "u1"}, event_type="user_created")
    )
    pending = runner.take_pending()  # the last step: the executor journals it with the run's outcome
    if pending is not None:
        journal.record_step(run_id, pending)
    return event


def test_publish_event_step_stores_once_however_often_the_run_is_replayed(queues: dict[str, str]) -> None:
    journal = Journal()
    first = run_publish_step("run-1", journal)
    assert (first.topic, first.sequence_id, first.event_type, first.data) == (
        TOPIC,
        1,
        "user_created",
        {"user": "u1"},
    )
    assert first.id.startswith("evt_")
    replayed = run_publish_step("run-1", journal)  # the journaled step answers; nothing is published
    assert replayed == first
    other_run = run_publish_step("run-2", journal)
    assert other_run.sequence_id == 2
    stored = EventStore().list_topic(TOPIC, 0, 100).events
    assert [e.sequence_id for e in stored] == [1, 2]
    assert [e.id for e in delivered(queues["fan-a"])] == [first.id, other_run.id]


def test_publish_event_step_republished_after_a_lost_journal_write_is_stored_once(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal()
    monkeypatch.setattr(
        Journal, "record_step", lambda self, run_id, step, **_: None
    )  # journal writes are lost
    first = run_publish_step("run-9", journal)
    again = run_publish_step("run-9", journal)
    assert again == first
    assert len(EventStore().list_topic(TOPIC, 0, 100).events) == 1
    assert [e.id for e in delivered(queues["fan-b"])] == [first.id, first.id]


def test_publish_event_rejects_bad_data_without_retrying(queues: dict[str, str]) -> None:
    runner = StepRunner(run_id="run-x", journal=Journal(), steps=[], lease_until=time.time() + 900)
    with pytest.raises(NonRetryableError, match=r"events\[0\]\.data is 262155 bytes"):
        asyncio.run(runner.publish_event("big", TOPIC, {"blob": "x" * 256 * 1024}))
    assert EventStore().list_topic(TOPIC, 0, 10).events == []


def test_event_data_round_trips_through_the_store_unchanged(queues: dict[str, str]) -> None:
    data = {"float": 0.1, "int": 10**30, "text": 'ü\u0000\n"', "list": [1, [2, [3]]], "bool": False}
    published = publish_events(TOPIC, [NewEvent(id=None, data=data)]).events[0]
    stored = EventStore().list_topic(TOPIC, 0, 1).events[0]
    assert stored == published and stored.data == data
    raw = settings.dynamodb().get_item(
        TableName=settings.get_settings().events_table,
        Key={"pk": {"S": "topic#fan/out#0"}, "sk": {"S": "00000000000000000001"}},
    )["Item"]
    assert json.loads(raw["data"]["S"]) == data
    assert int(raw["expires_at"]["N"]) > time.time() + 29 * 86400


def test_a_keyed_publish_whose_claim_answer_was_lost_stores_its_events_once(queues: dict[str, str]) -> None:
    """botocore resends the claim (a conditional PutItem) whose answer was lost: the resend finds the record
    the first send wrote (our hash, ``pending``, nothing stored yet) and the publish carries out that plan."""
    from helpers.worker import answer_lost

    with answer_lost("PutItem", 1) as seen:
        first = publish_events(TOPIC, events(3), idempotency_key="lost-claim")
    assert seen[0] == 2, "the claim was not resent"
    assert first.response["sequence_ids"] == [1, 2, 3]
    assert [e.sequence_id for e in EventStore().list_topic(TOPIC, 0, 100).events] == [1, 2, 3]
    again = publish_events(TOPIC, events(3), idempotency_key="lost-claim")
    assert again.response == first.response
    assert [e.sequence_id for e in EventStore().list_topic(TOPIC, 0, 100).events] == [1, 2, 3]

"""A retry with an ``Idempotency-Key`` that comes after the gap its crashed attempt left has settled (and a
listing passed it) stores the missing events at fresh sequence ids, never in the passed gap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fanapp import TOPIC, provision_fan_app
from helpers.apigw import gateway_call, http_event
from helpers.aws_calls import Crash, crash_after
from polos.api.keys import KeyStore
from polos.payloads import EventItem
from polos.publish import events as event_store
from polos.publish import idempotency, publishing
from polos.publish.events import EventStore, WriteWindowClosedError
from polos.publish.publishing import NewEvent, publish_events

_REAL_TIME = time.time


class Clock:
    """``time.time()`` of the publisher and the event store, movable forward (no 5-minute sleeps)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return _REAL_TIME() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    shifted_clock = Clock()
    shifted = SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    shifted.time = shifted_clock.time
    for module in (publishing, event_store):
        monkeypatch.setattr(module, "time", shifted)
    yield shifted_clock


def body(count: int, key: str) -> dict[str, Any]:
    return {"topic": TOPIC, "events": [{"data": {"key": key, "i": i}} for i in range(count)]}


def events(count: int, key: str) -> list[NewEvent]:
    return [NewEvent(id=None, data=event["data"]) for event in body(count, key)["events"]]


@pytest.fixture
def publish(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int, str], Any]:
    """``publish(count, idempotency key)``: ``count`` events through the API handler."""
    provision_fan_app(tmp_path, monkeypatch)
    _, api_key = KeyStore().create("late")

    def call(count: int, key: str) -> Any:
        request = body(count, key)
        event = http_event("POST", "/api/v1/events/publish", body=request, headers={"Idempotency-Key": key})
        event["headers"]["authorization"] = f"Bearer {api_key}"
        return gateway_call(event)

    return call


class Reader:
    """A client paging the topic with ``next_after_sequence_id``, as the API answers it."""

    def __init__(self) -> None:
        self.after = 0
        self.seen: list[EventItem] = []

    def read(self) -> None:
        while True:
            page = EventStore().list_topic(TOPIC, self.after, 100, gap_wait_seconds=0)
            self.seen.extend(page.events)
            if page.events:
                self.after = page.events[-1].sequence_id
            if page.next_after_sequence_id is None:
                return
            if not page.events:
                self.after = page.next_after_sequence_id
                return  # stopped before an in-flight write


CLAIMED = 4  # the API key's check, the Idempotency-Key's read, the reserve, the key's claim
FIRST_WRITE = 5


def crash_then_settle(publish: Callable[[int, str], Any], clock: Clock, count: int, crash_at: int) -> Reader:
    """The keyed publish crashes after request ``crash_at``; another publish follows; 5 minutes pass; a
    reader pages past the crashed publish's gap."""
    with crash_after(crash_at) as seen, pytest.raises(Crash):
        publish(count, "late")
    assert (
        seen[CLAIMED - 1 :][:2] == ["dynamodb.PutItem", "dynamodb.BatchWriteItem"][: crash_at - CLAIMED + 1]
    )
    assert publish(1, "other").status == 200
    clock.offset += event_store.GAP_SETTLE_SECONDS + 1
    reader = Reader()
    reader.read()
    assert [e.data["key"] for e in reader.seen][-1] == "other"  # it paged past the gap
    return reader


@pytest.mark.parametrize(
    ("count", "crash_at", "written_before"),
    [(10, CLAIMED, 0), (30, FIRST_WRITE, 25)],
    ids=["crash after the key's claim", "crash after the first of two batch writes"],
)
def test_a_late_retry_stores_the_missing_events_where_a_reader_past_the_gap_still_finds_them(
    publish: Callable[[int, str], Any], clock: Clock, count: int, crash_at: int, written_before: int
) -> None:
    reader = crash_then_settle(publish, clock, count, crash_at)
    answer = publish(count, "late")
    assert answer.status == 200, answer.json
    reader.read()
    late = [e for e in reader.seen if e.data["key"] == "late"]
    assert sorted(e.data["i"] for e in late) == list(range(count)), "the reader saw every event once"
    other = next(e.sequence_id for e in reader.seen if e.data["key"] == "other")
    moved = [e for e in answer.json["events"] if e["sequence_id"] > other]
    assert len(moved) == count - written_before  # what was stored kept its ids, the rest took fresh ones
    assert answer.json["events"] == [
        {"id": e.id, "sequence_id": e.sequence_id, "topic": TOPIC}
        for e in sorted(late, key=lambda e: e.data["i"])
    ]
    assert publish(count, "late").json == answer.json  # the key keeps answering the same


def test_two_late_retries_racing_agree_on_one_plan(
    publish: Callable[[int, str], Any], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = crash_then_settle(publish, clock, 10, CLAIMED)
    replace = idempotency.IdempotencyStore.replace
    answers: list[Any] = []
    raced: list[bool] = []

    def other_retry_first(self: idempotency.IdempotencyStore, *args: Any) -> Any:
        if not raced:  # the first retry is about to replace the plan: a second one does it all first
            raced.append(True)
            digest = idempotency.request_hash(body(10, "late"))
            answers.append(publish_events(TOPIC, events(10, "late"), "late", digest))
        return replace(self, *args)

    monkeypatch.setattr(idempotency.IdempotencyStore, "replace", other_retry_first)
    first = publish(10, "late")
    assert first.status == 200
    assert first.json == answers[0].response
    clock.offset = 0  # the first retry's fresh ids are marked as gaps: no wait for them, settled or not
    reader.read()
    late = [e for e in reader.seen if e.data["key"] == "late"]
    assert sorted(e.data["i"] for e in late) == list(range(10))
    assert (
        EventStore().list_topic(TOPIC, reader.after, 100, gap_wait_seconds=0).next_after_sequence_id is None
    )


def test_a_late_retry_whose_plan_replacement_answer_was_lost_keeps_its_own_plan(
    publish: Callable[[int, str], Any], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = crash_then_settle(publish, clock, 10, CLAIMED)
    replace = idempotency.IdempotencyStore.replace

    def applied_then_retried(self: idempotency.IdempotencyStore, *args: Any) -> Any:
        replace(self, *args)  # applied, its answer lost: botocore sends it again
        return replace(self, *args)

    mark_gaps = EventStore.mark_gaps
    marked: list[int] = []

    def recorded(self: EventStore, topic: str, sequence_ids: list[int]) -> None:
        marked.extend(sequence_ids)
        mark_gaps(self, topic, sequence_ids)

    monkeypatch.setattr(idempotency.IdempotencyStore, "replace", applied_then_retried)
    monkeypatch.setattr(EventStore, "mark_gaps", recorded)
    answer = publish(10, "late")
    assert answer.status == 200, answer.json
    assert not set(answer.json["sequence_ids"]) & set(marked), "its own fresh ids were never marked as gaps"
    reader.read()
    assert sorted(e.data["i"] for e in reader.seen if e.data["key"] == "late") == list(range(10))


def test_a_retry_while_an_earlier_attempt_may_still_be_writing_is_refused_until_it_cannot(
    publish: Callable[[int, str], Any], clock: Clock
) -> None:
    with crash_after(CLAIMED), pytest.raises(Crash):
        publish(10, "late")
    clock.offset += event_store.WRITE_WINDOW_SECONDS + 1
    refused = publish(10, "late")
    assert refused.status == 409 and "retry in" in refused.json["error"], refused.json
    clock.offset += event_store.WRITE_LANDS_SECONDS
    assert publish(10, "late").status == 200


@pytest.mark.parametrize(
    "later", [event_store.WRITE_WINDOW_SECONDS + 1, event_store.REPLAN_AFTER_SECONDS + 1, 20 * 3600]
)
def test_a_replay_of_a_finished_publish_answers_the_first_response_at_any_age(
    publish: Callable[[int, str], Any], clock: Clock, later: float
) -> None:
    first = publish(10, "done")
    assert first.status == 200
    clock.offset += later
    replay = publish(10, "done")
    assert (replay.status, replay.json) == (200, first.json)
    reader = Reader()
    reader.read()
    assert [e.sequence_id for e in reader.seen] == list(range(1, 11))  # nothing stored again, no fresh ids


def test_the_store_starts_no_write_after_the_window(publish: Callable[[int, str], Any]) -> None:
    reserved = EventStore().reserve(TOPIC, 1)[0]
    event = EventItem(id="evt_1", sequence_id=reserved, topic=TOPIC, data={}, created_at=datetime.now(UTC))
    with pytest.raises(WriteWindowClosedError):
        EventStore().put_many([event], time.time())
    with pytest.raises(WriteWindowClosedError):
        EventStore().put_claimed([event], time.time())
    assert EventStore().stored_ids(TOPIC, [event.sequence_id]) == set()
    publish_events(TOPIC, [NewEvent(id=None, data={})])  # the store still writes inside a window

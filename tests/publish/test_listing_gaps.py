"""Listing never skips an event: reserved-but-unwritten sequence ids stop a page until written or settled."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fanapp import TOPIC, provision_fan_app
from helpers.apigw import gateway_call, http_event
from polos.api.keys import KeyStore
from polos.payloads import EventItem
from polos.publish import events as event_store
from polos.publish.events import EventStore
from polos.publish.publishing import NewEvent, publish_events
from polos.publish.waiters import WaiterStore


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision_fan_app(tmp_path, monkeypatch)


def event(sequence_id: int, age_seconds: float = 0) -> EventItem:
    created_at = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return EventItem(
        id=f"evt_{sequence_id}",
        sequence_id=sequence_id,
        topic=TOPIC,
        data={"n": sequence_id},
        created_at=created_at,
    )


def list_api(after: int) -> dict[str, Any]:
    _, key = KeyStore().create("listing-gaps")
    query = {"topic": TOPIC, "after_sequence_id": str(after)}
    answer = gateway_call(http_event("GET", "/api/v1/events", query=query, api_key=key))
    assert answer.status == 200, answer.json
    return dict(answer.json)


def test_a_page_stops_before_a_reserved_id_whose_event_is_not_written_yet(queues: dict[str, str]) -> None:
    store = EventStore()
    slow, _ = store.reserve(TOPIC, 1)  # publisher A reserved 1 and has not written it yet
    publish_events(TOPIC, [NewEvent(id=None, data={"n": 2})])  # publisher B: 2, written
    page = store.list_topic(TOPIC, 0, 10, gap_wait_seconds=0)
    assert (page.events, page.next_after_sequence_id) == ([], 0)
    assert list_api(0) == {"events": [], "next_after_sequence_id": 0}
    store.put_many([event(slow)], time.time() + 60)  # A's write lands
    page = store.list_topic(TOPIC, 0, 10, gap_wait_seconds=0)
    assert [e.sequence_id for e in page.events] == [1, 2] and page.next_after_sequence_id is None


def test_a_write_landing_during_the_bounded_wait_is_in_the_page(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore()
    slow, _ = store.reserve(TOPIC, 1)
    publish_events(TOPIC, [NewEvent(id=None, data={"n": 2})])
    stored = EventStore._stored
    checks: list[int] = []

    def lands_while_waiting(self: EventStore, topic: str, sequence_id: int) -> bool:
        checks.append(sequence_id)
        if len(checks) == 2:  # the reader is waiting: A's write lands now
            store.put_many([event(slow)], time.time() + 60)
        return stored(self, topic, sequence_id)

    monkeypatch.setattr(EventStore, "_stored", lands_while_waiting)
    page = store.list_topic(TOPIC, 0, 10, gap_wait_seconds=5)
    assert [e.sequence_id for e in page.events] == [1, 2] and page.next_after_sequence_id is None
    assert checks[:2] == [1, 1]


def test_a_settled_gap_is_skipped(queues: dict[str, str]) -> None:
    store = EventStore()
    store.reserve(TOPIC, 3)  # 1 and 2: a publisher that crashed; 3 written long ago
    store.put_many([event(3, age_seconds=event_store.GAP_SETTLE_SECONDS + 5)], time.time() + 60)
    publish_events(TOPIC, [NewEvent(id=None, data={"n": 4})])
    page = store.list_topic(TOPIC, 0, 10, gap_wait_seconds=0)
    assert [e.sequence_id for e in page.events] == [3, 4]


def test_an_id_lost_to_a_client_id_race_is_marked_and_passed_at_once(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_events(TOPIC, [NewEvent(id="race", data={"who": "winner"})])
    monkeypatch.setattr(EventStore, "find_claimed", lambda self, topic, ids: {})  # the lookup missed it
    publish_events(TOPIC, [NewEvent(id="race", data={"who": "loser"}), NewEvent(id="fresh", data={})])
    started = time.monotonic()
    page = EventStore().list_topic(TOPIC, 0, 10)  # the default wait: a marked gap costs none of it
    assert [(e.id, e.sequence_id) for e in page.events] == [("race", 1), ("fresh", 3)]
    assert time.monotonic() - started < event_store.GAP_WAIT_SECONDS


def test_a_reader_paging_while_publishers_race_never_misses_an_event(
    queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    publishers, per_publisher = 4, 6
    put_many = EventStore.put_many
    rng = random.Random(7)

    def slow_write(self: EventStore, events: list[EventItem], write_by: float) -> None:
        time.sleep(rng.uniform(0, 0.03))  # widen the window between reserving and writing
        put_many(self, events, write_by)

    monkeypatch.setattr(EventStore, "put_many", slow_write)
    done = threading.Event()
    errors: list[BaseException] = []

    def publisher(number: int) -> None:
        try:
            for i in range(per_publisher):
                publish_events(TOPIC, [NewEvent(id=None, data={"p": number, "i": i})])
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    seen: list[int] = []

    def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            page = EventStore().list_topic(TOPIC, after, 3, gap_wait_seconds=0.05)
            seen.extend(e.sequence_id for e in page.events)
            after = page.events[-1].sequence_id if page.events else after
            if finished and page.next_after_sequence_id is None:
                return

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(publishers)]
    read = threading.Thread(target=reader)
    read.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    read.join(timeout=60)
    assert not errors and not read.is_alive()
    total = publishers * per_publisher
    assert seen == list(range(1, total + 1))


def test_a_waiters_look_back_passes_gap_markers(queues: dict[str, str]) -> None:
    store = EventStore()
    lost, _ = store.reserve(TOPIC, 1)
    store.mark_gaps(TOPIC, [lost])  # e.g. an id given up by a late Idempotency-Key retry
    published = publish_events(TOPIC, [NewEvent(id=None, data={"n": 2})]).events
    assert list(WaiterStore().look_back(TOPIC, 0)) == [(lost, None), *((e.sequence_id, e) for e in published)]

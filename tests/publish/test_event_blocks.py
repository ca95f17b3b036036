"""A topic's events are stored in blocks of BLOCK sequence ids, one partition key each, so no key takes
every event write of a topic; readers merge the blocks, and events stored before blocks (one partition per
topic) are still read."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fanapp import TOPIC, provision_fan_app
from polos.aws import settings
from polos.payloads import EventItem
from polos.publish import events
from polos.publish.events import EventRef, EventStore, encode_event
from polos.publish.publishing import NewEvent, publish_events
from polos.publish.waiters import WaiterStore

BLOCK = 10  # blocks of 10 here (100 deployed): the same code, fewer events to publish


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(events, "BLOCK_EVENTS", BLOCK)
    return provision_fan_app(tmp_path, monkeypatch)


def _publish(count: int) -> None:
    for start in range(0, count, 100):
        publish_events(
            TOPIC, [NewEvent(id=None, data={"n": n}) for n in range(start, min(count, start + 100))]
        )


def _event_keys() -> Counter[str]:
    items = settings.dynamodb().scan(TableName=settings.get_settings().events_table)["Items"]
    return Counter(item["pk"]["S"] for item in items if item["pk"]["S"].startswith("topic#"))


def _listed(store: EventStore, limit: int) -> list[int]:
    found: list[int] = []
    after: int | None = 0
    while after is not None:
        page = store.list_topic(TOPIC, after, limit, gap_wait_seconds=0)
        found += [event.sequence_id for event in page.events]
        after = page.next_after_sequence_id
    return found


def test_no_partition_key_takes_more_than_a_block_of_a_topics_events(queues: dict[str, str]) -> None:
    _publish(2 * BLOCK + 5)
    keys = _event_keys()
    assert keys == {
        f"topic#{TOPIC}#0": BLOCK - 1,
        f"topic#{TOPIC}#1": BLOCK,
        f"topic#{TOPIC}#2": 6,
    }


def test_listing_pages_across_blocks_in_order_without_gaps_or_repeats(queues: dict[str, str]) -> None:
    _publish(2 * BLOCK + 5)
    total = 2 * BLOCK + 5
    for limit in (1, 7, BLOCK, 1000):
        assert _listed(EventStore(), limit) == list(range(1, total + 1)), limit
    refs = [EventRef(TOPIC, n, "") for n in (1, BLOCK, BLOCK + 1, total)]
    assert [event.sequence_id for event in EventStore().get_many(refs)] == [ref.sequence_id for ref in refs]


def _legacy_event(sequence_id: int) -> None:
    """An event as stored before blocks: the topic's one partition ``topic#<topic>``."""
    event = EventItem(
        id=f"evt_old{sequence_id}",
        sequence_id=sequence_id,
        topic=TOPIC,
        data={"old": sequence_id},
        created_at=datetime.now(UTC),
    )
    item = encode_event(event, int(time.time()) + 3600)
    item["pk"] = {"S": f"topic#{TOPIC}"}
    settings.dynamodb().put_item(TableName=settings.get_settings().events_table, Item=item)


def test_events_stored_before_blocks_are_read_with_the_new_ones(queues: dict[str, str]) -> None:
    """A redeploy keeps the events already stored: the topic's counter says 1..15 were handed out by the
    old layout; the next publishes go to blocks; every reader returns both, in order."""
    store = EventStore()
    store.reserve(TOPIC, 15)
    for sequence_id in range(1, 16):
        _legacy_event(sequence_id)
    _publish(10)  # 16..25: blocks 1 (16..19) and 2 (20..25)
    assert _listed(store, 4) == list(range(1, 26))
    refs = [EventRef(TOPIC, n, "") for n in (3, 14, 15, 16, 25)]
    assert [event.sequence_id for event in store.get_many(refs)] == [3, 14, 15, 16, 25]
    assert store.stored_ids(TOPIC, [10, 17, 99]) == {10, 17}
    assert [seq for seq, event in WaiterStore().look_back(TOPIC, 12) if event] == list(range(13, 26))


def test_each_client_id_claim_has_a_partition_key_of_its_own(queues: dict[str, str]) -> None:
    publish_events(TOPIC, [NewEvent(id=f"order-{n}", data={"n": n}) for n in range(5)])
    items = settings.dynamodb().scan(TableName=settings.get_settings().events_table)["Items"]
    claims = [item["pk"]["S"] for item in items if item["pk"]["S"].startswith("id#")]
    assert sorted(claims) == [f"id#{TOPIC}#order-{n}" for n in range(5)]
    again = publish_events(TOPIC, [NewEvent(id="order-3", data={"n": 3})]).events
    assert [(event.id, event.sequence_id) for event in again] == [("order-3", 4)]


def test_a_client_id_claimed_before_one_key_per_claim_is_still_stored_once(queues: dict[str, str]) -> None:
    store = EventStore()
    store.reserve(TOPIC, 1)
    _legacy_event(1)
    table = settings.get_settings().events_table
    settings.dynamodb().put_item(
        TableName=table,
        Item={
            "pk": {"S": f"id#{TOPIC}"},
            "sk": {"S": "evt_old1"},
            "seq": {"N": "1"},
            "expires_at": {"N": str(int(time.time()) + 3600)},
        },
    )
    again = publish_events(TOPIC, [NewEvent(id="evt_old1", data={"old": 1})]).events
    assert [(event.id, event.sequence_id, event.data) for event in again] == [("evt_old1", 1, {"old": 1})]
    assert _listed(store, 10) == [1]  # nothing stored twice

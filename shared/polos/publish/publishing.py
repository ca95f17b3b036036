"""Publishing: validate, plan ids and sequence ids, store, fan out. For the API and ``publish_event``.

Every rule is checked before the first AWS call, so a rejected publish stores and sends nothing. Then:

1. client-given ids are looked up (BatchGetItem): an id already stored answers with the stored event;
2. the new events' sequence ids are reserved in one UpdateItem (consecutive, in request order);
3. with an ``Idempotency-Key``, the plan (ids, sequence ids, ``created_at``) is claimed under the key
   (see :mod:`polos.publish.idempotency`); the key is read before step 1, so a retry answers the first
   response (every event of the plan stored) or finishes the first attempt's plan, reserving nothing;
4. events are written (BatchWriteItem, 25 per call; client-id events with their claim in transactions);
5. every event of the request, stored before or now, goes to every subscriber's queue;
6. the event waiters its events can match are read and woken (:mod:`polos.publish.waiters`; nothing when
   the reserve saw no live mark of a waiter on the topic);
7. the key's record is marked completed only if storing changed the plan (a client id another publish
   stored meanwhile); else it stays ``pending``, and a replay that finds every event of its plan stored
   answers the plan's response and sends the events again (it writes nothing).

Writes at a plan's reserved sequence ids start within ``WRITE_WINDOW_SECONDS`` of the plan's creation
(:mod:`polos.publish.events`), so that a listing passing a settled gap never passes an event written later.
A retry under a key whose plan is older finishes it differently:

- older than ``REPLAN_AFTER_SECONDS`` (no write at its ids can land any more): the plan's events already
  stored keep their ids; the others take fresh sequence ids (the old ones are marked as gaps), and the new
  plan replaces the old one in the key's record only if the record still holds the old one (a concurrent
  retry that replaced it first is followed instead);
- in between: an earlier attempt may still be writing, so the retry is refused (``409``, retry later).

DynamoDB requests for N events: 1 (reserve) + ceil(N/25) (writes); with client ids + ceil(ids/100) (claim
lookup, + as many again to load ids already stored) and one transaction per 50 client-id events; with an
``Idempotency-Key`` + 2 (read, claim; the record is completed only when storing changed the plan); + 1
PutItem per workflow and concurrency key when queue-limited workflows subscribe (the start order,
:mod:`polos.publish.start_order`); a replay costs 1 + the stored check and the reads of its events
(BatchGetItem, 100 per call, each) + its sends again. SQS: ceil(N/10) SendMessageBatch per subscriber
(N small events).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from polos import serde
from polos.aws import observability
from polos.errors import NonRetryableError, StepResultError
from polos.payloads import EventItem, utc_iso
from polos.publish import fanout, idempotency, start_order, waiters
from polos.publish.events import (
    REPLAN_AFTER_SECONDS,
    WRITE_WINDOW_SECONDS,
    EventRef,
    EventStore,
    EventStoreError,
    Item,
)
from polos.topics import canonical_topic

logger = Logger(service="polos")

MAX_EVENTS = 1000
MAX_DATA_BYTES = 256 * 1024
MAX_EVENT_TYPE_LENGTH = 256
MAX_EVENT_ID_LENGTH = 128
# Deeper data breaks pydantic downstream (its JSON parser stops at 200 levels, its serializer at ~250),
# so the limit is checked up front with a clear message rather than failing in a workflow later.
MAX_DATA_DEPTH = 100
EVENT_ID_RULE = f"1 to {MAX_EVENT_ID_LENGTH} characters of letters, digits, '_', '-', '.' or ':'"
_EVENT_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_EVENT_ID_LENGTH}}}")
IDEMPOTENCY_SCOPE = "publish"


class InvalidPublishError(NonRetryableError, ValueError):
    """A publish request breaks a rule; ``field`` names the input at fault (``events[3].data`` …)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


class EventTooLargeError(InvalidPublishError):
    """An event's data is over the size limit."""


@dataclass(frozen=True)
class NewEvent:
    """An event to publish; ``id`` is optional (stored at most once per topic when given)."""

    id: str | None
    data: dict[str, Any]
    event_type: str | None = None


@dataclass(frozen=True)
class PublishResult:
    """The stored events in request order, and the HTTP API's ``200`` body."""

    events: list[EventItem]
    response: dict[str, Any]


@dataclass
class _Entry:
    id: str
    sequence_id: int
    new: bool  # False: the id was stored before; the stored event is the answer


@dataclass
class _Plan:
    """What one publish stores: what an ``Idempotency-Key`` record holds and the response is made of."""

    topic: str
    created_at: str
    entries: list[_Entry]
    # The topic's event waiter marks when the ids were reserved (``None``: unknown, e.g. a plan finished
    # after a crash; then they are looked up). Not part of the key's record.
    marks: waiters.Marks | None = None

    def to_json(self) -> str:
        body = {
            "topic": self.topic,
            "created_at": self.created_at,
            "events": [[entry.id, entry.sequence_id, entry.new] for entry in self.entries],
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> _Plan:
        raw = json.loads(text)
        return cls(
            raw["topic"], raw["created_at"], [_Entry(str(i), int(s), bool(n)) for i, s, n in raw["events"]]
        )

    def age(self) -> float:
        """Seconds since the plan was made."""
        return time.time() - datetime.fromisoformat(self.created_at).timestamp()

    def refs(self) -> list[EventRef]:
        return [EventRef(self.topic, entry.sequence_id, entry.id) for entry in self.entries]

    def response(self) -> dict[str, Any]:
        return {
            "sequence_ids": [entry.sequence_id for entry in self.entries],
            "created_at": self.created_at,
            "events": [
                {"id": entry.id, "sequence_id": entry.sequence_id, "topic": self.topic}
                for entry in self.entries
            ],
        }


@dataclass(frozen=True)
class _Keyed:
    """An ``Idempotency-Key`` with the hash of the request it came with."""

    records: idempotency.IdempotencyStore
    key: str
    digest: str


def publish_events(
    topic: str,
    events: list[NewEvent],
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> PublishResult:
    """Publish ``events`` to ``topic``: stored once each, then sent to every subscribed workflow.

    ``request_hash`` identifies the request under ``idempotency_key`` (the API hashes its JSON body);
    without it the hash of ``topic`` and ``events`` is used.
    """
    canonical = canonical_topic(topic)
    checked = _validate(events)
    store = EventStore()
    keyed: _Keyed | None = None
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= idempotency.MAX_KEY_LENGTH:
            raise InvalidPublishError(
                "Idempotency-Key", f"must be 1 to {idempotency.MAX_KEY_LENGTH} characters long"
            )
        digest = request_hash or idempotency.request_hash(
            {
                "topic": topic,
                "events": [{"id": e.id, "data": e.data, "event_type": e.event_type} for e in checked],
            }
        )
        keyed = _Keyed(idempotency.IdempotencyStore(IDEMPOTENCY_SCOPE), idempotency_key, digest)
        # Looked up first, so a replay or a conflict reserves no sequence ids and stores nothing.
        record = keyed.records.get(idempotency_key)
        if record is not None:
            return _follow(record, keyed, store, checked)
    client_ids = [event.id for event in checked if event.id is not None]
    known = store.find_claimed(canonical, client_ids) if client_ids else {}
    plan = _plan(store, canonical, checked, known)
    if keyed is not None:
        record = keyed.records.claim(keyed.key, keyed.digest, plan.to_json())
        if record is not None:  # a concurrent request with the same key claimed it first
            return _follow(record, keyed, store, checked)
    return _carry_out(store, plan, checked, known, keyed, fresh=True)


def _follow(
    record: idempotency.IdempotencyRecord, keyed: _Keyed, store: EventStore, events: list[NewEvent]
) -> PublishResult:
    """Answer from the key's record: its response when completed, else finish its plan."""
    if record.request_hash != keyed.digest:
        raise idempotency.IdempotencyConflictError(
            "Idempotency-Key was already used with a different request body"
        )
    plan = _Plan.from_json(record.plan)
    log = {"topic": plan.topic, "events": len(plan.entries)}
    if record.status == "completed":
        logger.info("idempotent replay", extra=log)
        return PublishResult(store.get_many(plan.refs()), plan.response())
    settled = _settled(store, plan)
    if settled is not None:
        logger.info("idempotent replay: its events are stored, sending them again", extra=log)
        return _carry_out(store, settled[0], events, settled[1], None)
    age = plan.age()
    if age >= REPLAN_AFTER_SECONDS:
        return _replan(store, plan, keyed, events)
    if age >= WRITE_WINDOW_SECONDS:
        raise idempotency.IdempotencyInProgressError(
            "an earlier request with this Idempotency-Key may still be storing its events; "
            f"retry in {math.ceil(REPLAN_AFTER_SECONDS - age)} seconds"
        )
    logger.info("finishing an interrupted publish", extra=log)
    return _carry_out(store, plan, events, {}, keyed)


def _settled(store: EventStore, plan: _Plan) -> tuple[_Plan, dict[str, EventItem]] | None:
    """The pending ``plan`` with every event stored (each ``new`` one at its sequence id), and those events
    by id (read once: the replay sends them), else ``None``.

    A finished publish leaves its key's record ``pending`` (no completion write: it would cost every keyed
    publish a write unit), so this is how a replay knows the plan needs no write: its answer is the plan's
    response, and its events are sent again (deliveries are at least once; their runs exist already).
    """
    reserved = [entry.sequence_id for entry in plan.entries if entry.new]
    found = store.stored_events(plan.topic, reserved) if reserved else {}
    if len(found) < len(set(reserved)):
        return None
    entries = [_Entry(entry.id, entry.sequence_id, new=False) for entry in plan.entries]
    return _Plan(plan.topic, plan.created_at, entries), {event.id: event for event in found.values()}


def _replan(store: EventStore, plan: _Plan, keyed: _Keyed, events: list[NewEvent]) -> PublishResult:
    """Finish a plan too old to write at its ids: what it stored stays, the rest takes fresh ids.

    Nothing can write at the old ids any more (its write window closed and what started in it has
    landed), so which of them hold an event is final; the empty ones are marked as gaps.
    """
    reserved = [entry.sequence_id for entry in plan.entries if entry.new]
    written = store.stored_ids(plan.topic, reserved)
    empty = [sequence_id for sequence_id in reserved if sequence_id not in written]
    if empty:
        store.mark_gaps(plan.topic, empty)
    first, counter = store.reserve(plan.topic, len(empty)) if empty else (0, None)
    fresh = list(range(first, first + len(empty)))
    moved = dict(zip(empty, fresh, strict=True))
    entries = [
        _Entry(entry.id, moved[entry.sequence_id], new=True)
        if entry.new and entry.sequence_id in moved
        else _Entry(entry.id, entry.sequence_id, new=False)
        for entry in plan.entries
    ]
    replanned = _Plan(plan.topic, utc_iso(_now()), entries, _marks(counter))
    found = keyed.records.replace(keyed.key, keyed.digest, plan.to_json(), replanned.to_json())
    if found is not None and found.plan != replanned.to_json():
        # Another retry replaced the plan first: ours is in no record, so its fresh ids stay empty.
        if fresh:
            store.mark_gaps(plan.topic, fresh)
        return _follow(found, keyed, store, events)
    logger.info("a late retry takes fresh sequence ids", extra={"topic": plan.topic, "moved": len(fresh)})
    return _carry_out(store, replanned, events, {}, keyed)


def _now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


def _carry_out(
    store: EventStore,
    plan: _Plan,
    events: list[NewEvent],
    known: dict[str, EventItem],
    keyed: _Keyed | None,
    *,
    fresh: bool = False,
) -> PublishResult:
    """Store the plan, send every event of it to the subscribers, hand them to the event waiters they can
    match. A ``fresh`` plan (not a retry's) registers its new events' start order first
    (:mod:`polos.publish.start_order`). The key's record is completed only when storing changed the plan
    (a client id another publish stored meanwhile): a retry could not rebuild that answer from the store."""
    planned = plan.to_json()
    stored = _execute(store, plan, events, known)
    new = {entry.sequence_id for entry in plan.entries if entry.new}
    registered = start_order.register(
        plan.topic, [e for e in stored if e.sequence_id in new] if fresh else []
    )
    try:
        fanout.deliver(fanout.event_messages(plan.topic, stored))  # first: a slow match holds back no event
    except Exception:
        try:  # not all were sent: none may hold later events back (past its bound, it holds none anyway)
            start_order.unregister(registered)
        except Exception:  # the send's own error is the answer (a throttle: 503, retried by the client)
            logger.exception("could not unregister the start order of a publish whose sending failed")
        raise
    if plan.marks is None or plan.marks.any:  # after the events are stored: see polos.publish.waiters
        waiters.match_published(plan.topic, stored, plan.marks)
    if keyed is not None and plan.to_json() != planned:
        keyed.records.complete(keyed.key, keyed.digest, plan.to_json())
    logger.info("published", extra={"topic": plan.topic, "events": len(stored)})
    observability.count("EventsPublished", len(stored))
    return PublishResult(stored, plan.response())


def _validate(events: list[NewEvent]) -> list[NewEvent]:
    """The events with their data as JSON gives it back; :class:`InvalidPublishError` naming the field."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        count = len(events) if isinstance(events, list) else type(events).__name__
        raise InvalidPublishError("events", f"must hold 1 to {MAX_EVENTS} events; got {count}")
    checked: list[NewEvent] = []
    first_index: dict[str, int] = {}
    for index, event in enumerate(events):
        field = f"events[{index}]"
        if not isinstance(event.data, dict):
            raise InvalidPublishError(
                f"{field}.data", f"must be a JSON object, got {type(event.data).__name__}"
            )
        if _nested_deeper_than(event.data, MAX_DATA_DEPTH):
            raise InvalidPublishError(f"{field}.data", f"is nested more than {MAX_DATA_DEPTH} levels deep")
        try:
            text = serde.to_json(event.data, what=f"{field}.data", limit=sys.maxsize)
        except StepResultError as exc:  # its message starts with the field it names
            raise InvalidPublishError(f"{field}.data", str(exc).removeprefix(f"{field}.data ")) from None
        except RecursionError as exc:
            raise InvalidPublishError(f"{field}.data", f"is not JSON: {exc}") from None
        size = len(text.encode())
        if size > MAX_DATA_BYTES:
            raise EventTooLargeError(
                f"{field}.data",
                f"is {size} bytes as compact JSON; at most {MAX_DATA_BYTES} bytes (256 KB) are allowed",
            )
        if event.event_type is not None and (
            not isinstance(event.event_type, str) or not 1 <= len(event.event_type) <= MAX_EVENT_TYPE_LENGTH
        ):
            raise InvalidPublishError(
                f"{field}.event_type", f"must be a string of 1 to {MAX_EVENT_TYPE_LENGTH} characters"
            )
        if event.event_type is not None and (problem := serde.unicode_problem(event.event_type)):
            raise InvalidPublishError(f"{field}.event_type", problem)
        if event.id is not None:
            if not isinstance(event.id, str) or not _EVENT_ID.fullmatch(event.id):
                raise InvalidPublishError(f"{field}.id", f"must be {EVENT_ID_RULE}")
            if event.id in first_index:
                raise InvalidPublishError(
                    f"{field}.id",
                    f"repeats events[{first_index[event.id]}].id {event.id!r}; ids must be unique",
                )
            first_index[event.id] = index
        checked.append(NewEvent(id=event.id, data=json.loads(text), event_type=event.event_type))
    return checked


def _nested_deeper_than(data: dict[str, Any], limit: int) -> bool:
    """Whether objects and arrays in ``data`` (itself level 1) nest deeper than ``limit`` (iteratively)."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if id(value) in seen:
            continue
        seen.add(id(value))
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def _plan(store: EventStore, topic: str, events: list[NewEvent], known: dict[str, EventItem]) -> _Plan:
    """Ids and sequence ids for ``events``: stored ones keep theirs, new ones get a reserved range."""
    fresh = sum(1 for event in events if event.id is None or event.id not in known)
    next_sequence, counter = store.reserve(topic, fresh) if fresh else (0, None)
    entries: list[_Entry] = []
    for event in events:
        stored = known.get(event.id) if event.id is not None else None
        if stored is not None:
            entries.append(_Entry(stored.id, stored.sequence_id, new=False))
        else:
            entries.append(_Entry(event.id or f"evt_{uuid.uuid4().hex[:26]}", next_sequence, new=True))
            next_sequence += 1
    return _Plan(topic, utc_iso(_now()), entries, _marks(counter))


def _marks(counter: Item | None) -> waiters.Marks | None:
    """The event waiter marks of the counter item a reserve answered (``None``: nothing was reserved)."""
    return None if counter is None else waiters.Marks.of(counter)


def _execute(
    store: EventStore, plan: _Plan, events: list[NewEvent], known: dict[str, EventItem]
) -> list[EventItem]:
    """Store the plan's new events; returns every event of the plan, in request order.

    A client id another publish claimed meanwhile turns its entry into that stored event (``plan`` is
    updated so the response and the idempotency record say so).
    """
    if len(plan.entries) != len(events):
        raise idempotency.IdempotencyConflictError(
            "Idempotency-Key was already used with a different request"
        )
    created_at = datetime.fromisoformat(plan.created_at)
    write_by = created_at.timestamp() + WRITE_WINDOW_SECONDS
    plain: list[EventItem] = []
    claimed: list[EventItem] = []
    for entry, event in zip(plan.entries, events, strict=True):
        if entry.new:
            item = EventItem(
                id=entry.id,
                sequence_id=entry.sequence_id,
                topic=plan.topic,
                event_type=event.event_type,
                data=event.data,
                created_at=created_at,
            )
            (plain if event.id is None else claimed).append(item)
    if plain:
        store.put_many(plain, write_by)
    taken = store.put_claimed(claimed, write_by) if claimed else {}
    lost = [entry for entry in plan.entries if entry.new and entry.id in taken]
    if lost:  # their reserved sequence ids stay empty: mark them so listings need not wait for them
        store.mark_gaps(plan.topic, [entry.sequence_id for entry in lost])
    for entry in lost:
        entry.sequence_id, entry.new = taken[entry.id], False
    new_events = {item.sequence_id: item for item in plain + claimed}
    stored = {(event.id, event.sequence_id): event for event in known.values()}
    missing = [
        EventRef(plan.topic, entry.sequence_id, entry.id)
        for entry in plan.entries
        if not entry.new and (entry.id, entry.sequence_id) not in stored
    ]
    if missing:
        stored.update({(event.id, event.sequence_id): event for event in store.get_many(missing)})
    result: list[EventItem] = []
    for entry in plan.entries:
        found = new_events.get(entry.sequence_id) if entry.new else stored.get((entry.id, entry.sequence_id))
        if found is None:
            raise EventStoreError(f"event {entry.id!r} (sequence id {entry.sequence_id}) is no longer stored")
        result.append(found)
    return result

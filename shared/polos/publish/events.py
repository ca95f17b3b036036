"""The event store in DynamoDB: sequence reservation, batch writes, client id claims, reads and listing.

Layout (events table, keys ``pk``/``sk``, TTL ``expires_at``):

- event: ``pk=topic#<topic>#<block>`` (block = sequence id // :data:`BLOCK_EVENTS`), ``sk=<sequence id, 20
  digits>``; ``id``, the data as compact JSON (so numbers
  and nesting survive untouched): ``data`` (a string) below :data:`COMPRESS_FROM_BYTES`, else ``data_z``
  (zlib of the JSON's UTF-8, binary) when that is smaller; ``event_type``, ``created_at``, ``expires_at``.
  :func:`encode_event` and :func:`decode_event` are the one codec; items of either form are read.
- gap marker: an event's key with ``gap`` = true (and ``expires_at``): a reserved sequence id that will never
  hold an event (its client id was stored by another publish meanwhile); listings pass it at once.
- counter: ``pk=seq#<topic>``, ``sk=seq``; ``last`` = the highest sequence id handed out. It has no TTL:
  a counter that expired would hand out sequence ids again.

Why blocks: a topic's events are append-only, so one partition key per topic would take every event write
of the topic, and DynamoDB serves at most 1,000 write units a second on one key. A block takes
:data:`BLOCK_EVENTS` consecutive events (at most 100 write units of 1 KB events, whatever the rate), then the
next block takes over. Readers merge the blocks in sequence order; a listing reads the counter to know the
last block. Events stored before blocks (``pk=topic#<topic>``, no block) are read too: a listing merges
that partition in, and a read by key that misses a block's key tries it.
- client id claim: ``pk=id#<topic>#<id>``, ``sk=claim``; ``id`` and ``seq`` of the event holding that id. It
  is written in the same transaction as its event and expires with it, so a live claim always has its
  event. One partition key per claim: a topic's claims never share one (before, ``pk=id#<topic>``,
  ``sk=<id>``: such claims are still read, for ids the new layout does not hold).
"""

from __future__ import annotations

import heapq
import itertools
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import (
    BATCH_WRITE_MAX_BYTES,
    BATCH_WRITE_MAX_ITEMS,
    MAX_ATTEMPTS,
    UnprocessedWritesError,
    chunked,
    get_all,
    pause,
    write_all,
)
from polos.aws.item_size import item_size
from polos.payloads import EventItem, utc_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

logger = Logger(service="polos")


@dataclass(frozen=True, slots=True, order=True)
class EventRef:
    """Where a stored event lives: its canonical topic and sequence id (unique together), and its id."""

    topic: str
    sequence_id: int
    id: str

    def to_list(self) -> list[Any]:
        return [self.topic, self.sequence_id, self.id]

    @classmethod
    def from_list(cls, raw: list[Any]) -> EventRef:
        return cls(topic=str(raw[0]), sequence_id=int(raw[1]), id=str(raw[2]))


Item = dict[str, "AttributeValueTypeDef"]

SEQUENCE_DIGITS = 20
COUNTER_SK = "seq"
# Consecutive sequence ids per partition key of a topic's events: 100 events of 1 KB are 100 write units,
# a tenth of one key's limit however fast the topic is published to (``python -m bench --only capacity``).
BLOCK_EVENTS = 100
# A publish reserves at most 1,000 ids (polos.publish.publishing.MAX_EVENTS): one that died before writing
# its events leaves at most 10 blocks with nothing in a row; more in a row are expired (reading newest first).
EMPTY_BLOCKS_AT_END = 11
TRANSACTION_MAX_ACTIONS = 100
TRANSACTION_MAX_BYTES = 4 * 1024 * 1024
SCAN_PAGE_ITEMS = 100  # events read per Query while listing (a page of the API stops at its byte budget)
# A publish writes the events it reserved within its function's timeout (API 29 s, worker 120 s) or never:
# a missing sequence id followed by an event older than this is a gap that stays (DESIGN §2 allows them).
GAP_SETTLE_SECONDS = 300
GAP_ATTRIBUTE = "gap"  # on an item at a sequence id whose reservation was given up (a lost id race)
GAP_WAIT_SECONDS = 2.0  # how long one listing request waits for an in-flight write before stopping
# So that no event lands in a gap a listing already passed, writes into reserved ids are bounded in time:
# a write at a plan's ids starts within WRITE_WINDOW_SECONDS of the plan's creation (checked before every
# request) and lands within WRITE_LANDS_SECONDS of starting (the longest timeout of a function that
# publishes: the worker's 120 s; Lambda stops it there). Past REPLAN_AFTER_SECONDS no write at the plan's
# ids can land any more: a retry then takes fresh ids (see polos.publish.publishing). 30 s of it are left
# below GAP_SETTLE_SECONDS for the clocks of two functions to differ.
WRITE_WINDOW_SECONDS = 150
WRITE_LANDS_SECONDS = 120
REPLAN_AFTER_SECONDS = WRITE_WINDOW_SECONDS + WRITE_LANDS_SECONDS


class EventStoreError(RuntimeError):
    """The store could not finish a write or read (after retrying what DynamoDB left unprocessed)."""


class WriteWindowClosedError(EventStoreError):
    """A write at reserved sequence ids would start after their write window closed."""


def _check_window(write_by: float) -> None:
    if time.time() >= write_by:
        raise WriteWindowClosedError(
            "the write window of these reserved sequence ids has closed; a listing may pass them"
        )


def event_pk(topic: str, sequence_id: int) -> str:
    """The partition key of ``topic``'s event ``sequence_id``: its block's."""
    return f"{_legacy_pk(topic)}#{sequence_id // BLOCK_EVENTS}"


def _legacy_pk(topic: str) -> str:
    """Where a topic's events were stored before blocks (all of them under one key)."""
    return f"topic#{topic}"


def topic_of(pk: str) -> str:
    """The topic of an event item's partition key (either layout: topics hold no ``#``)."""
    return pk.removeprefix("topic#").split("#", 1)[0]


def sequence_sk(sequence_id: int) -> str:
    return str(sequence_id).zfill(SEQUENCE_DIGITS)


CLAIM_SK = "claim"


def _claim_key(topic: str, event_id: str) -> Item:
    return {"pk": {"S": f"id#{topic}#{event_id}"}, "sk": {"S": CLAIM_SK}}


def _legacy_claim_key(topic: str, event_id: str) -> Item:
    """Where an id's claim was stored before one key per claim."""
    return {"pk": {"S": f"id#{topic}"}, "sk": {"S": event_id}}


def _event_key(topic: str, sequence_id: int) -> Item:
    return {"pk": {"S": event_pk(topic, sequence_id)}, "sk": {"S": sequence_sk(sequence_id)}}


def _legacy_key(key: Item) -> Item:
    """Where the event of an event key was stored before blocks."""
    return {"pk": {"S": _legacy_pk(topic_of(str(key["pk"]["S"])))}, "sk": key["sk"]}


def event_keys(topic: str, sequence_id: int) -> list[Item]:
    """Every key the event ``sequence_id`` of ``topic`` may be stored at: its block's, then where events
    were stored before blocks."""
    key = _event_key(topic, sequence_id)
    return [key, _legacy_key(key)]


def _claim(event: EventItem, expires_at: int) -> Item:
    """The item claiming ``event``'s client-given id for its sequence id."""
    return {
        **_claim_key(event.topic, event.id),
        "id": {"S": event.id},
        "seq": {"N": str(event.sequence_id)},
        "expires_at": {"N": str(expires_at)},
    }


# Event data of COMPRESS_FROM_BYTES of JSON or more is stored compressed when that saves at least
# 1/COMPRESS_MIN_SAVING of its bytes. A 1 KB event's item is ~1.2 KB (2 write units) as text and fits one
# write unit compressed (JSON text usually shrinks by half or more, random base64 tokens by a quarter,
# random printable ASCII by a seventh), and storage and PITR shrink with it. Text keeps an item readable
# in the console: below 256 bytes an item is far from a write unit boundary and zlib has little to work on
# (6 bytes of framing, no repeats in short text), and a saving under an eighth is not worth the readability.
COMPRESS_FROM_BYTES = 256
COMPRESS_MIN_SAVING = 8


def _data_attribute(data: Any) -> tuple[str, AttributeValueTypeDef]:
    """The stored form of event data: ``data`` (JSON text) or ``data_z`` (zlib of its UTF-8, binary).

    zlib from the standard library: no dependency in the Lambda layer, and compressing large attributes
    into a binary attribute is DynamoDB's own advice for large items. Its default level: level 9 saved no
    byte more on the bench's 1 KB events.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode()
    if len(raw) >= COMPRESS_FROM_BYTES:
        packed = zlib.compress(raw)
        if len(raw) - len(packed) >= len(raw) // COMPRESS_MIN_SAVING:
            return "data_z", {"B": packed}
    return "data", {"S": text}


def encode_event(event: EventItem, expires_at: int) -> Item:
    name, data = _data_attribute(event.data)
    item: Item = {
        **_event_key(event.topic, event.sequence_id),
        "id": {"S": event.id},
        name: data,
        "created_at": {"S": utc_iso(event.created_at)},
        "expires_at": {"N": str(expires_at)},
    }
    if event.event_type is not None:
        item["event_type"] = {"S": event.event_type}
    return item


def decode_event(item: Item) -> EventItem:
    """The event of a stored item, its data stored in either form (``data`` or ``data_z``)."""
    event_type = item.get("event_type")
    packed = item.get("data_z")
    return EventItem(
        id=item["id"]["S"],
        sequence_id=int(item["sk"]["S"]),
        topic=topic_of(item["pk"]["S"]),
        event_type=None if event_type is None else event_type["S"],
        data=json.loads(zlib.decompress(packed["B"]) if packed is not None else item["data"]["S"]),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
    )


# An event with a client-given id is written with its claim: (the event, its item, the claim's item).
_ClaimedWrite = tuple[EventItem, Item, Item]


def _pair_size(write: _ClaimedWrite) -> int:
    """The bytes an event and its claim add to a transaction."""
    return item_size(write[1]) + item_size(write[2])


@dataclass(frozen=True)
class EventPage:
    """One page of a topic's events; ``next_after_sequence_id`` is ``None`` when nothing follows."""

    events: list[EventItem]
    next_after_sequence_id: int | None


class EventStore:
    """Reads and writes the events table. Holds no state beyond its client and table name."""

    def __init__(self, client: DynamoDBClient | None = None, table: str | None = None) -> None:
        self._client = client or settings.dynamodb()
        self._table = table or settings.get_settings().events_table

    @staticmethod
    def expires_at() -> int:
        return int(time.time()) + settings.get_settings().retention_seconds

    def reserve(self, topic: str, count: int) -> tuple[int, Item]:
        """Reserve ``count`` consecutive sequence ids of ``topic`` (one UpdateItem); returns the first, and
        the counter item after it (its marks tell which event waiters to read: see polos.publish.waiters)."""
        answer = self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}},
            UpdateExpression="ADD #last :count",
            ExpressionAttributeNames={"#last": "last"},
            ExpressionAttributeValues={":count": {"N": str(count)}},
            ReturnValues="ALL_NEW",
        )
        counter = answer["Attributes"]
        return int(str(counter["last"]["N"])) - count + 1, counter

    def put_many(self, events: list[EventItem], write_by: float) -> None:
        """Store events (BatchWriteItem, 25 per call), retrying unprocessed items with backoff; no call
        starts at or after ``write_by`` (epoch seconds: :class:`WriteWindowClosedError`)."""
        expires_at = self.expires_at()
        items = [encode_event(event, expires_at) for event in events]
        self._batch_put(items, "event(s)", write_by)

    def _batch_put(self, items: list[Item], what: str, write_by: float | None = None) -> None:
        """BatchWriteItem, 25 per call, retrying unprocessed items with backoff."""
        for chunk in chunked(items, BATCH_WRITE_MAX_ITEMS, BATCH_WRITE_MAX_BYTES, item_size):
            if write_by is not None:
                _check_window(write_by)
            requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in chunk]
            try:
                write_all(self._client, self._table, requests)
            except UnprocessedWritesError as exc:
                raise EventStoreError(f"{what} not stored: {exc}") from exc

    def put_claimed(self, events: list[EventItem], write_by: float) -> dict[str, int]:
        """Store events whose ids are client-given, each with its id claim in one transaction; no
        transaction starts at or after ``write_by`` (:class:`WriteWindowClosedError`).

        An id already claimed for another sequence id is not stored again: the answer maps such ids to
        the sequence id of the event that holds them. A claim with the event's own sequence id means
        the event was stored by an earlier attempt of the same publish, which counts as stored.
        """
        expires_at = self.expires_at()
        now = int(time.time())
        taken: dict[str, int] = {}
        writes = [(event, encode_event(event, expires_at), _claim(event, expires_at)) for event in events]
        for chunk in chunked(writes, TRANSACTION_MAX_ACTIONS // 2, TRANSACTION_MAX_BYTES, _pair_size):
            pending = chunk
            for attempt in range(1, MAX_ATTEMPTS + 1):
                _check_window(write_by)
                pending = self._transact(pending, now, taken)
                if not pending:
                    break
                if attempt == MAX_ATTEMPTS:
                    raise EventStoreError(
                        f"{len(pending)} event(s) could not be stored after {attempt} attempts"
                    )
                pause(attempt)
        return taken

    def _transact(self, writes: list[_ClaimedWrite], now: int, taken: dict[str, int]) -> list[_ClaimedWrite]:
        """One transaction for ``writes``; returns those to try again (after a conflict elsewhere)."""
        actions: list[TransactWriteItemTypeDef] = []
        for _, item, claim_item in writes:
            actions.append({"Put": {"TableName": self._table, "Item": item}})
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": claim_item,
                        # An expired claim not yet removed by TTL does not hold the id any more.
                        "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                        "ExpressionAttributeValues": {":now": {"N": str(now)}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
            retry: list[_ClaimedWrite] = []
            for index, write in enumerate(writes):
                event = write[0]
                claim = reasons[2 * index + 1] if 2 * index + 1 < len(reasons) else {}
                if claim.get("Code") == "ConditionalCheckFailed" and "Item" in claim:
                    stored = int(claim["Item"]["seq"]["N"])
                    if stored != event.sequence_id:
                        taken[event.id] = stored
                else:
                    retry.append(write)
            logger.info("event id claims conflicted", extra={"taken": len(taken), "retrying": len(retry)})
            return retry
        return []

    def find_claimed(self, topic: str, ids: list[str]) -> dict[str, EventItem]:
        """The stored events of ``topic`` holding any of ``ids``, by id (strongly consistent reads)."""
        now = int(time.time())
        wanted = list(dict.fromkeys(ids))
        claims = self._batch_get([_claim_key(topic, event_id) for event_id in wanted])
        held = {item["id"]["S"] for item in claims}
        older = [event_id for event_id in wanted if event_id not in held]
        if older:  # claims stored before one key per claim (the id is their sort key)
            claims += self._batch_get([_legacy_claim_key(topic, event_id) for event_id in older])
        refs = [
            EventRef(topic, int(item["seq"]["N"]), item["id"]["S"] if "id" in item else item["sk"]["S"])
            for item in claims
            if int(item["expires_at"]["N"]) >= now
        ]
        found = {event.id: event for event in self.get_many(refs)}
        missing = [ref.id for ref in refs if ref.id not in found]
        if missing:
            raise EventStoreError(f"event id claim(s) without their event in topic {topic!r}: {missing[:5]}")
        return found

    def get_many(self, refs: list[EventRef]) -> list[EventItem]:
        """The events ``refs`` name, in ``refs`` order (BatchGetItem, strongly consistent).

        Events no longer stored (past their retention) are left out and logged.
        """
        keys = [_event_key(ref.topic, ref.sequence_id) for ref in dict.fromkeys(refs)]
        by_ref = {
            (event.topic, event.sequence_id): event for event in map(decode_event, self._get_events(keys))
        }
        events = [
            by_ref[(ref.topic, ref.sequence_id)] for ref in refs if (ref.topic, ref.sequence_id) in by_ref
        ]
        if len(by_ref) < len(keys):
            gone = [ref.to_list() for ref in refs if (ref.topic, ref.sequence_id) not in by_ref]
            logger.warning("events not found (expired?)", extra={"missing": gone[:20], "count": len(gone)})
        return events

    def stored_ids(self, topic: str, sequence_ids: list[int]) -> set[int]:
        """Which of ``sequence_ids`` hold an event (BatchGetItem, strongly consistent; not a gap marker)."""
        return set(self._stored_items(topic, sequence_ids))

    def stored_events(self, topic: str, sequence_ids: list[int]) -> dict[int, EventItem]:
        """The events stored at ``sequence_ids``, by sequence id (BatchGetItem, strongly consistent; gap
        markers left out)."""
        return {
            sequence_id: decode_event(item)
            for sequence_id, item in self._stored_items(topic, sequence_ids).items()
        }

    def _stored_items(self, topic: str, sequence_ids: list[int]) -> dict[int, Item]:
        """The event items at ``sequence_ids`` (not gap markers), by sequence id, not decoded."""
        items = self._get_events(
            [_event_key(topic, sequence_id) for sequence_id in dict.fromkeys(sequence_ids)]
        )
        return {int(item["sk"]["S"]): item for item in items if GAP_ATTRIBUTE not in item}

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        """The items of ``keys`` that exist (strongly consistent BatchGetItem calls)."""
        pairs = [(str(key["pk"]["S"]), str(key["sk"]["S"])) for key in keys]
        return list(get_all(self._client, self._table, pairs, consistent=True).values())

    def _get_events(self, keys: list[Item]) -> list[Item]:
        """The event items of ``keys`` that exist, in either layout: keys whose block holds nothing are
        read again where events were stored before blocks (one more request, only when some are missing)."""
        found = self._batch_get(keys)
        if len(found) == len(keys):
            return found
        seen = {(item["pk"]["S"], item["sk"]["S"]) for item in found}
        missing = [key for key in keys if (key["pk"]["S"], key["sk"]["S"]) not in seen]
        return found + self._batch_get([_legacy_key(key) for key in missing])

    def list_topic(
        self,
        topic: str,
        after_sequence_id: int,
        limit: int,
        *,
        max_bytes: int | None = None,
        size: Callable[[EventItem], int] = lambda _: 0,
        gap_wait_seconds: float = GAP_WAIT_SECONDS,
    ) -> EventPage:
        """Up to ``limit`` events of ``topic`` with sequence ids above ``after_sequence_id``, in order.

        The page never skips an event: sequence ids are reserved before their events are written, so a
        missing id followed by a stored one may be a write still in flight. The page waits for it (at most
        ``gap_wait_seconds`` per request) and otherwise stops before it, its ``next_after_sequence_id``
        pointing there. A missing id is skipped only once it is settled: the event stored after it was
        created more than :data:`GAP_SETTLE_SECONDS` ago, longer than any publish may take to write what
        it reserved (a crashed publisher, or events past their retention, leave such gaps). The page also
        stops before its events' ``size`` would pass ``max_bytes`` (the first event always fits).
        """
        events: list[EventItem] = []
        used = 0
        deadline = time.monotonic() + gap_wait_seconds
        position = after_sequence_id  # every id up to here is listed, a marked gap or a settled one
        while True:
            refill = False
            for sequence_id, event in self.items_after(
                topic, position, page_items=min(limit + 1, SCAN_PAGE_ITEMS)
            ):
                if event is None:  # a gap marker: this id never holds an event
                    position = sequence_id
                    continue
                missing = position + 1
                if sequence_id != missing and not self._gap_settled(topic, missing, event, deadline):
                    if not self._stored(topic, missing):
                        return EventPage(events, position)  # an in-flight write: stop before it
                    refill = True  # the missing event landed meanwhile: read on from before it
                    break
                if len(events) == limit:
                    return EventPage(events, position)
                cost = size(event)
                if events and max_bytes is not None and used + cost > max_bytes:
                    return EventPage(events, position)
                events.append(event)
                used += cost
                position = sequence_id
            if not refill:
                return EventPage(events, None)

    def items_after(
        self, topic: str, after_sequence_id: int, upto: int | None = None, page_items: int = SCAN_PAGE_ITEMS
    ) -> Iterator[tuple[int, EventItem | None]]:
        """Sequence ids of ``topic`` after ``after_sequence_id`` (up to ``upto``, else the counter's last id)
        with their event (``None``: a gap marker), in order, read a page at a time as they are asked for:
        the blocks, merged with the partition of events stored before blocks (a Query that finds nothing
        once those have expired)."""
        last = self.last_reserved(topic) if upto is None else upto
        if last <= after_sequence_id:
            return
        blocks = (
            self._query_events(event_pk(topic, block * BLOCK_EVENTS), after_sequence_id, last, page_items)
            for block in range((after_sequence_id + 1) // BLOCK_EVENTS, last // BLOCK_EVENTS + 1)
        )
        legacy = self._query_events(_legacy_pk(topic), after_sequence_id, last, page_items)
        yield from heapq.merge(itertools.chain.from_iterable(blocks), legacy, key=lambda pair: pair[0])

    def newest_first(
        self, topic: str, upto: int, page_items: int = SCAN_PAGE_ITEMS
    ) -> Iterator[tuple[int, EventItem | None]]:
        """Sequence ids of ``topic`` from ``upto`` down, with their event (``None``: a gap marker), read a
        page at a time as they are asked for: the blocks from ``upto``'s down, merged with the partition of
        events stored before blocks. The blocks stop after :data:`EMPTY_BLOCKS_AT_END` below ``upto``'s that
        hold nothing in a row: every event has the same retention, so the blocks below them expired before
        them (fewer in a row may be the ids of a publish that died before writing its events)."""

        def blocks() -> Iterator[tuple[int, EventItem | None]]:
            top, empty = upto // BLOCK_EVENTS, 0
            for block in range(top, -1, -1):
                held = False
                pk = event_pk(topic, block * BLOCK_EVENTS)
                for pair in self._query_events(pk, -1, upto, page_items, forward=False):
                    held = True
                    yield pair
                empty = 0 if held or block == top else empty + 1
                if empty == EMPTY_BLOCKS_AT_END:
                    return

        legacy = self._query_events(_legacy_pk(topic), -1, upto, page_items, forward=False)
        yield from heapq.merge(blocks(), legacy, key=lambda pair: pair[0], reverse=True)

    def sequence_before(self, topic: str, stamp: str) -> int:
        """A sequence id of ``topic`` at or above every event created at or before ``stamp`` (a stored
        ``created_at``) and less than a block above the newest of them: a binary search over the blocks,
        one Query of a block's first items each (log2 of the blocks). A block holding no event (expired)
        counts as older."""
        last = self.last_reserved(topic)
        low, high = 0, last // BLOCK_EVENTS  # the blocks above ``high`` start after ``stamp``
        while low < high:
            middle = (low + high + 1) // 2
            if self._block_starts_after(topic, middle, stamp):
                high = middle - 1
            else:
                low = middle
        return min(last, (low + 1) * BLOCK_EVENTS - 1)

    def _block_starts_after(self, topic: str, block: int, stamp: str) -> bool:
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": event_pk(topic, block * BLOCK_EVENTS)}},
            Limit=10,  # past the gap markers a block may start with
        )
        first = next((item for item in page.get("Items", []) if "created_at" in item), None)
        return first is not None and str(first["created_at"]["S"]) > stamp

    def _query_events(
        self, pk: str, after_sequence_id: int, upto: int, page_items: int, forward: bool = True
    ) -> Iterator[tuple[int, EventItem | None]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :upto",
            "ExpressionAttributeValues": {
                ":pk": {"S": pk},
                ":first": {"S": sequence_sk(after_sequence_id + 1)},
                ":upto": {"S": sequence_sk(upto)},
            },
            "ConsistentRead": True,
            "Limit": page_items,
            "ScanIndexForward": forward,
        }
        while True:
            page = self._client.query(**kwargs)
            for item in page.get("Items", []):
                yield int(item["sk"]["S"]), None if GAP_ATTRIBUTE in item else decode_event(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def last_reserved(self, topic: str) -> int:
        """The highest sequence id handed out on ``topic`` (0: none yet)."""
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}},
            ConsistentRead=True,
            ProjectionExpression="#last",
            ExpressionAttributeNames={"#last": "last"},
        ).get("Item")
        return int(item["last"]["N"]) if item and "last" in item else 0

    def mark_gaps(self, topic: str, sequence_ids: list[int]) -> None:
        """Mark reserved sequence ids that will never hold an event, so listings pass them at once."""
        expires_at = str(self.expires_at())
        markers: list[Item] = [
            {**_event_key(topic, sequence_id), GAP_ATTRIBUTE: {"BOOL": True}, "expires_at": {"N": expires_at}}
            for sequence_id in sequence_ids
        ]
        self._batch_put(markers, "gap marker(s)")

    def _gap_settled(self, topic: str, missing: int, after_gap: EventItem, deadline: float) -> bool:
        """Whether ``missing`` (stored events follow it) is a settled gap; waits until ``deadline`` if not."""
        delay = 0.02
        while True:
            age = time.time() - after_gap.created_at.timestamp()
            if age > GAP_SETTLE_SECONDS:
                logger.info("skipping a settled gap", extra={"topic": topic, "sequence_id": missing})
                return True
            if self._stored(topic, missing) or time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)  # waiting on another writer: no condition to subscribe to, so poll
            delay = min(delay * 2, 0.2)

    def _stored(self, topic: str, sequence_id: int) -> bool:
        key = _event_key(topic, sequence_id)
        return any(
            "Item"
            in self._client.get_item(
                TableName=self._table, Key=where, ConsistentRead=True, ProjectionExpression="pk"
            )
            for where in (key, _legacy_key(key))
        )

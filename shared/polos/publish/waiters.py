"""Completing waiting steps, and the event waiters matched on the publish path.

A waiting step (see :mod:`polos.runtime.waits`) is completed by exactly one completer: :func:`complete`
records its result (or error) on the step item with one UpdateItem conditional on the step still being
``waiting``, then wakes the run with a ``resume`` message (sent even when another completer won: that one
may have died before sending it; a duplicate wake-up is turned away by the worker).

Event waiters (``wait_for_event`` and ``suspend``) live in the events table, indexed so that a publish
reads only the waiters its events can match:

- a waiter with a ``match`` is kept under ONE of its keys (:func:`indexed_field`: the first in sorted
  order) and that key's value: ``pk=wait#<topic>#<hash of [key, value] as canonical JSON>`` (any JSON
  value fits DynamoDB's key limit), ``sk=<run_id>#<step>``. A publish Queries, per event, the partition of
  each of its data's top-level keys that some live waiter of the topic is indexed by; the waiter's other
  ``match`` keys, ``event_type`` and ``after`` are checked in code.
- a waiter without ``match`` is kept in ``pk=wait#<topic>`` (the one partition of the old layout, where
  waiters registered before the index still are: see below); a publish with any live one reads it once.
- item: the run's workflow, the step, ``after`` (the topic's last sequence id when the step was first
  reached), ``event_type``, ``match``, ``kind``, ``v`` = 2; TTL ``expires_at`` = the wait's end plus
  :data:`WAITER_MARGIN_SECONDS` (an untimed wait renews it, see :data:`UNTIMED_RENEW_SECONDS`).
- marks on the topic's counter item (``seq#<topic>``, see :mod:`polos.publish.events`): ``wu_<hash of the
  key>`` (``wu_any`` for waiters without ``match``) = until when such waiters may exist. Only ever raised,
  :data:`MARK_SLACK_SECONDS` beyond the latest waiter's TTL so that most registrations need not write it.
  The UpdateItem that reserves a publish's sequence ids returns them: a topic without live marks costs a
  publish nothing more, and a mark lapses by itself when its waits end (no count for TTL to leave high).

The race between a publish and a registration is closed from both sides: a publisher writes its events,
then (when the reserve saw a live mark) reads the waiters; a registering step writes its waiter, makes sure
the mark covers it, then reads the topic's counter (:meth:`WaiterStore.register` returns that anchor) and
looks at the events after the step's ``after`` up to it (:meth:`WaiterStore.look_back`). All reads are
strongly consistent, so whichever writes last sees the other's write. Ids handed out after the anchor was
read saw the mark, so their publishers look for the waiter themselves.

One gap is left by the order of a publish's own requests: it reserves its sequence ids (seeing no mark
yet), and stores its events only later. If a waiter registers and looks back in between, it misses them,
and the publisher does not look for waiters. So the look-back notes the ids up to the anchor it has not
seen; when there are any, the run is woken once more (its ``recheck``, a wake-up like a timer's) after
:func:`recheck_delay` — the longest a publisher can live (the worker's Lambda timeout, which is also its
lease; the API's is shorter) — and reads only those ids again (the run's ``WaitingFor`` keeps ``checked``
and ``reserved``). A publish finished later by its client's retry looks the waiters up itself.

A publish delivers its events to the subscribers first and matches waiters after (:func:`match_published`):
a slow or throttled match never holds back an accepted event. A client's retry under the same
``Idempotency-Key`` sends and matches again (the key's record does not say how far the first attempt got;
settling is idempotent).

Waiters registered by the code before the index (all in ``wait#<topic>``, counted in the counter's
``waiters``) are still found: while that count is above 0 a publish reads ``wait#<topic>``, and when that
read holds no such waiter any more (matched, removed or deleted by TTL) it drops the count (conditionally,
so an old publisher still counting during a deployment is not overwritten).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import query_all, write_all
from polos.payloads import EventItem, utc_iso
from polos.publish.events import COUNTER_SK, EventStore
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

logger = Logger(service="polos")

WaiterKind = Literal["event", "resume"]


def run_topic(workflow_id: str, run_id: str) -> str:
    """The run's own topic: ``resume_<key>`` events on it resume its ``suspend`` steps."""
    return f"workflow/{workflow_id}/{run_id}"


def resume_event_type(key: str) -> str:
    return f"resume_{key}"


def suspend_event_type(key: str) -> str:
    """The type of the event a ``suspend`` step publishes on the run's topic when it starts waiting."""
    return f"suspend_{key}"


# --- completing a waiting step -----------------------------------------------------------------------


def complete_step(
    run_id: str,
    step: str,
    *,
    result_json: str | None = None,
    error_json: str | None = None,
    completed_by: str | None = None,
) -> bool:
    """Record the waiting step's result (or ``error_json``, failing it) unless it no longer waits; ``True``
    when this call did. One conditional UpdateItem on the runs table. ``completed_by``: the completing
    request's ``Idempotency-Key``, kept on the step so that its retry gets the same answer."""
    names = {"#status": "status"}
    values: dict[str, AttributeValueTypeDef] = {
        ":waiting": {"S": "waiting"},
        ":status": {"S": "failed" if error_json is not None else "completed"},
        ":stamp": {"S": _now_iso()},
    }
    sets = ["#status = :status", "finished_at = :stamp"]
    if error_json is not None:
        names["#error"], values[":error"] = "error", {"S": error_json}
        sets.append("#error = :error")
    else:
        names["#result"], values[":result"] = (
            "result",
            {"S": result_json if result_json is not None else "null"},
        )
        sets.append("#result = :result")
    if completed_by is not None:
        values[":by"] = {"S": completed_by}
        sets.append("completed_by = :by")
    try:
        settings.dynamodb().update_item(
            TableName=settings.get_settings().runs_table,
            Key={"pk": {"S": f"run#{run_id}"}, "sk": {"S": f"step#{step}"}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="#status = :waiting",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            # Refused; ours all the same when this request's first try was applied and its answer lost.
            old: Item = exc.response.get("Item", {})  # type: ignore[assignment]
            return completed_by is not None and old.get("completed_by") == {"S": completed_by}
        raise
    return True


def wake(workflow_id: str, run_id: str, step: str) -> None:
    """Put the run's ``resume`` message on its workflow's queue (one SendMessageBatch)."""
    deliver([WorkflowMessage(workflow_id, "resume", run_id=run_id, step=step)])


def complete(
    workflow_id: str,
    run_id: str,
    step: str,
    *,
    result_json: str | None = None,
    error_json: str | None = None,
    completed_by: str | None = None,
) -> bool:
    """Complete the waiting step and wake its run; ``True`` when this completer won."""
    won = complete_step(
        run_id, step, result_json=result_json, error_json=error_json, completed_by=completed_by
    )
    wake(workflow_id, run_id, step)
    return won


def _now_iso() -> str:
    return utc_iso(datetime.now(UTC))


# --- event waiters -----------------------------------------------------------------------------------

LAYOUT_VERSION = "2"  # ``v`` of a waiter item in the indexed layout (the old layout's items have none)
MARK_PREFIX = "wu_"  # the counter item's marks: until when waiters of one index may exist
MATCHLESS_MARK = f"{MARK_PREFIX}any"
LEGACY_COUNT = "waiters"  # the old layout's count of a topic's waiters, on its counter item
# A waiter outlives its wait's end by this much (clocks that differ, a timeout attempt that runs late).
WAITER_MARGIN_SECONDS = 15 * 60
# A mark is raised this far beyond what a registration needs, so that about one registration an hour per
# (topic, indexed key) writes the counter item; a topic's publishes read waiters that long after its last
# wait ended.
MARK_SLACK_SECONDS = 3600
# An untimed wait is registered again this often (a ``recheck`` wake-up), its waiter and mark kept
# UNTIMED_HORIZON_SECONDS ahead: they live as long as the wait, and lapse once it is gone.
UNTIMED_RENEW_SECONDS = 7 * 24 * 3600
UNTIMED_HORIZON_SECONDS = 2 * UNTIMED_RENEW_SECONDS


def canonical_json(value: Any) -> str:
    """``value`` as compact JSON, keys sorted, integral numbers as integers (``1.0`` is ``1``; ``true`` is
    not): the form match values are indexed and compared in."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


def indexed_field(match: dict[str, Any] | None) -> str | None:
    """The ``match`` key a waiter is indexed by: the first in sorted order (``None`` without ``match``)."""
    return min(match) if match else None


def field_mark(field: str) -> str:
    """The counter item's attribute marking waiters indexed by the data key ``field``."""
    return MARK_PREFIX + _digest(canonical_json(field), 16)


def waiters_pk(topic: str, field: str | None = None, value: Any = None) -> str:
    """The partition of the topic's waiters indexed by ``field`` = ``value`` (without ``field``: those
    without ``match``, and the old layout's)."""
    if field is None:
        return f"wait#{topic}"
    return f"wait#{topic}#{_digest(canonical_json([field, value]), 32)}"


def waiter_expires_at(until: float | None, now: float | None = None) -> int:
    """A waiter's TTL: its wait's end plus a margin; an untimed wait's, the renewal horizon from ``now``."""
    if until is not None:
        return int(until) + WAITER_MARGIN_SECONDS
    return int(time.time() if now is None else now) + UNTIMED_HORIZON_SECONDS


@dataclass(frozen=True, slots=True)
class Waiter:
    """A step waiting for the first event on ``topic`` after sequence id ``after`` that matches."""

    topic: str
    workflow_id: str
    run_id: str
    step: str
    after: int
    kind: WaiterKind = "event"
    event_type: str | None = None
    match: dict[str, Any] | None = None
    legacy: bool = False  # stored in the layout before the index (found in ``wait#<topic>``)

    def matches(self, event: EventItem) -> bool:
        if event.sequence_id <= self.after:
            return False
        if self.event_type is not None and event.event_type != self.event_type:
            return False
        return all(
            key in event.data and canonical_json(event.data[key]) == canonical_json(value)
            for key, value in (self.match or {}).items()
        )

    @property
    def partition(self) -> str:
        field = None if self.legacy else indexed_field(self.match)
        return (
            waiters_pk(self.topic)
            if field is None
            else waiters_pk(self.topic, field, (self.match or {})[field])
        )

    @property
    def mark(self) -> str:
        field = indexed_field(self.match)
        return MATCHLESS_MARK if field is None else field_mark(field)

    def result_json(self, event: EventItem) -> str:
        """What the step returns: the event (``wait_for_event``), or its data (``suspend``)."""
        if self.kind == "resume":
            return json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
        return event.model_dump_json()


@dataclass(frozen=True, slots=True)
class Marks:
    """Which of a topic's waiter partitions a publish reads, from the topic's counter item."""

    fields: frozenset[str] = frozenset()  # live marks of indexed keys (attribute names, ``wu_<hash>``)
    matchless: bool = False  # live waiters without ``match``, or the old layout's
    legacy: int = 0  # the old layout's count

    @property
    def any(self) -> bool:
        return bool(self.fields) or self.matchless

    @classmethod
    def of(cls, counter: Item, now: float | None = None) -> Marks:
        moment = time.time() if now is None else now
        live = {
            name
            for name, value in counter.items()
            if name.startswith(MARK_PREFIX) and float(str(value["N"])) > moment
        }
        legacy = int(str(counter[LEGACY_COUNT]["N"])) if LEGACY_COUNT in counter else 0
        return cls(frozenset(live - {MATCHLESS_MARK}), MATCHLESS_MARK in live or legacy > 0, legacy)


def _waiter_key(partition: str, run_id: str, step: str) -> Item:
    return {"pk": {"S": partition}, "sk": {"S": f"{run_id}#{step}"}}


def waiter_key(topic: str, run_id: str, step: str, match: dict[str, Any] | None) -> Item:
    """The key of a run's waiter (its TTL is kept with the run's, see ``polos.runtime.retention``)."""
    return _waiter_key(Waiter(topic, "", run_id, step, 0, match=match).partition, run_id, step)


def _counter_key(topic: str) -> Item:
    return {"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}}


def _encode(waiter: Waiter, expires_at: int) -> Item:
    item: Item = {
        **_waiter_key(waiter.partition, waiter.run_id, waiter.step),
        "wf": {"S": waiter.workflow_id},
        "run_id": {"S": waiter.run_id},
        "step": {"S": waiter.step},
        "after": {"N": str(waiter.after)},
        "kind": {"S": waiter.kind},
        "v": {"N": LAYOUT_VERSION},
        "expires_at": {"N": str(expires_at)},
    }
    if waiter.event_type is not None:
        item["event_type"] = {"S": waiter.event_type}
    if waiter.match is not None:
        item["match"] = {"S": json.dumps(waiter.match, separators=(",", ":"), ensure_ascii=False)}
    return item


def _decode(topic: str, item: Item) -> Waiter:
    event_type = item.get("event_type")
    match = item.get("match")
    return Waiter(
        topic=topic,
        workflow_id=str(item["wf"]["S"]),
        run_id=str(item["run_id"]["S"]),
        step=str(item["step"]["S"]),
        after=int(str(item["after"]["N"])),
        kind="resume" if item.get("kind", {}).get("S") == "resume" else "event",
        event_type=None if event_type is None else str(event_type["S"]),
        match=None if match is None else json.loads(str(match["S"])),
        legacy="v" not in item,
    )


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class LookedBack:
    """What a look-back found: the first matching event (``None``: none), and ``checked``, the highest
    sequence id up to which every id was seen (stored, or a gap marker)."""

    event: EventItem | None
    checked: int


class WaiterStore:
    """Event waiters in the events table."""

    def __init__(self) -> None:
        self._client = settings.dynamodb()
        self._table = settings.get_settings().events_table

    def anchor(self, topic: str) -> int:
        """The topic's last sequence id handed out (0 when none): a step waits for events after it."""
        return _last(self._counter(topic, "#last", {"#last": "last"}))

    def marks(self, topic: str) -> Marks:
        """The topic's live marks (one strongly consistent GetItem of its counter item)."""
        return Marks.of(self._counter(topic))

    def register(self, waiter: Waiter, until: float | None) -> int:
        """Store the waiter (registering again overwrites it with itself) and make sure the topic's mark
        covers it; returns the topic's last sequence id read after both, the anchor the look-back reads up
        to. One PutItem and one GetItem, and one UpdateItem when the mark must be raised (rarely)."""
        expires = waiter_expires_at(until)
        self._client.put_item(TableName=self._table, Item=_encode(waiter, expires))
        names = {"#last": "last", "#mark": waiter.mark}
        counter = self._counter(waiter.topic, "#last, #mark", names)
        if float(str(counter.get(waiter.mark, {}).get("N", "0"))) >= expires:
            return _last(counter)
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_counter_key(waiter.topic),
                UpdateExpression="SET #mark = :raised",
                ConditionExpression="attribute_not_exists(#mark) OR #mark < :needed",
                ExpressionAttributeNames={"#mark": waiter.mark},
                ExpressionAttributeValues={
                    ":raised": {"N": str(expires + MARK_SLACK_SECONDS)},
                    ":needed": {"N": str(expires)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            # Raised meanwhile by another registration: ids handed out before that did not see it.
            return self.anchor(waiter.topic)
        return _last(answer["Attributes"])

    def remove(self, topic: str, run_id: str, step: str, match: dict[str, Any] | None = None) -> None:
        """Delete the waiter (removing twice is a no-op); one with ``match`` also under the old layout's
        key, where a wait registered before the index may still be kept (one BatchWriteItem)."""
        indexed = Waiter(topic, "", run_id, step, 0, match=match)
        keys = [_waiter_key(indexed.partition, run_id, step)]
        if indexed_field(match) is not None:
            keys.append(_waiter_key(waiters_pk(topic), run_id, step))
        if len(keys) == 1:
            self._client.delete_item(TableName=self._table, Key=keys[0])
        else:
            write_all(self._client, self._table, [{"DeleteRequest": {"Key": key}} for key in keys])

    def remove_found(self, waiter: Waiter) -> None:
        """Delete the waiter item a Query found (one DeleteItem)."""
        self._client.delete_item(
            TableName=self._table, Key=_waiter_key(waiter.partition, waiter.run_id, waiter.step)
        )

    def waiting_in(self, topic: str, partition: str) -> list[Waiter]:
        """The waiters of one partition (one strongly consistent Query, more only past 1 MB)."""
        items = query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition}},
            ConsistentRead=True,
        )
        return [_decode(topic, item) for item in items]

    def look_back(
        self, topic: str, after: int, upto: int | None = None
    ) -> Iterator[tuple[int, EventItem | None]]:
        """The topic's items after sequence id ``after`` (up to ``upto``) in order, read a page at a time as
        they are asked for: each sequence id with its event, or ``None`` for a gap marker."""
        return EventStore(self._client, self._table).items_after(topic, after, upto)

    def forget_legacy(self, topic: str, count: int) -> None:
        """Drop the old layout's count of the topic's waiters, unless it changed since it was ``count``."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_counter_key(topic),
                UpdateExpression="REMOVE #count",
                ConditionExpression="#count = :seen",
                ExpressionAttributeNames={"#count": LEGACY_COUNT},
                ExpressionAttributeValues={":seen": {"N": str(count)}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def _counter(
        self, topic: str, projection: str | None = None, names: dict[str, str] | None = None
    ) -> Item:
        query: dict[str, Any] = {"TableName": self._table, "Key": _counter_key(topic), "ConsistentRead": True}
        if projection is not None:
            query.update(ProjectionExpression=projection, ExpressionAttributeNames=names or {})
        item: Item = self._client.get_item(**query).get("Item", {})
        return item


def _last(counter: Item) -> int:
    last = counter.get("last")
    return 0 if last is None else int(str(last["N"]))


def recheck_delay() -> float:
    """How long after a registration no publisher can still hold a sequence id reserved before it."""
    return float(settings.get_settings().lease_seconds)


def first_match(store: WaiterStore, waiter: Waiter, after: int, upto: int) -> LookedBack:
    """Look back at the topic's ids in ``(after, upto]`` for the first event ``waiter`` matches; stops there
    (no request when the range is empty: no id was handed out while the waiter registered)."""
    checked, contiguous = after, True
    if upto <= after:
        return LookedBack(None, checked)
    for sequence_id, event in store.look_back(waiter.topic, after, upto):
        if event is not None and waiter.matches(event):
            return LookedBack(event, checked)
        contiguous = contiguous and sequence_id == checked + 1
        if contiguous:
            checked = sequence_id
    return LookedBack(None, checked)


def settle(store: WaiterStore, waiter: Waiter, events: list[EventItem]) -> EventItem | None:
    """Give the waiter the first of ``events`` it matches: complete its step, wake its run, remove it.

    Returns the event when this call completed the step (``None``: no match, or another completer won).
    """
    event = next(
        (event for event in sorted(events, key=lambda e: e.sequence_id) if waiter.matches(event)), None
    )
    if event is None:
        return None
    won = complete(waiter.workflow_id, waiter.run_id, waiter.step, result_json=waiter.result_json(event))
    store.remove_found(waiter)
    return event if won else None


def _partitions(topic: str, events: list[EventItem], marks: Marks) -> list[str]:
    """The waiter partitions ``events`` can match, each once: per event, the partition of each data key
    some live waiter is indexed by (with the event's value), and the match-less one when it is live."""
    partitions: dict[str, None] = {waiters_pk(topic): None} if marks.matchless else {}
    if marks.fields:
        marked: dict[str, bool] = {}
        for event in events:
            for field, value in event.data.items():
                if field not in marked:
                    marked[field] = field_mark(field) in marks.fields
                if marked[field]:
                    partitions[waiters_pk(topic, field, value)] = None
    return list(partitions)


def match_published(topic: str, events: list[EventItem], marks: Marks | None = None) -> int:
    """The publish path's half of the race, after ``events`` were stored (and delivered): hand them to the
    waiters they can match. ``marks`` are what the publish's reserve saw (``None``: unknown, e.g. a plan
    finished by a retry: one GetItem). One Query per partition (:func:`_partitions`); per matched waiter
    one UpdateItem, one SendMessageBatch and one DeleteItem."""
    store = WaiterStore()
    marks = store.marks(topic) if marks is None else marks
    if not marks.any:
        return 0
    matched, legacy_seen = 0, False
    for partition in _partitions(topic, events, marks):
        for waiter in store.waiting_in(topic, partition):
            legacy_seen = legacy_seen or waiter.legacy
            if settle(store, waiter, events) is not None:
                matched += 1
    if marks.legacy > 0 and not legacy_seen:  # the old layout's waiters are all gone: stop reading it
        store.forget_legacy(topic, marks.legacy)
    if matched:
        logger.info("event waiters matched", extra={"topic": topic, "matched": matched})
    return matched

"""Completing waiting steps, and the event waiters matched on the publish path.

A waiting step (see :mod:`polos.runtime.waits`) is completed by exactly one completer: :func:`complete`
records its result (or error) on the step item with one UpdateItem conditional on the step still being
``waiting``, then wakes the run with a ``resume`` message (sent even when another completer won: that one
may have died before sending it; a duplicate wake-up is turned away by the worker).

Event waiters (``wait_for_event`` and ``suspend``) live in the events table:

- waiter: ``pk=wait#<topic>``, ``sk=<run_id>#<step>``; the run's workflow, the step, ``after`` (the topic's
  last sequence id when the step was first reached), ``event_type``, ``match``, ``kind``; TTL ``expires_at``.
- the topic's counter item (``seq#<topic>``, see :mod:`polos.publish.events`) counts them in ``waiters``;
  the UpdateItem that reserves a publish's sequence ids returns it, so a topic without waiters costs a
  publish nothing more. Registering and removing a waiter are one transaction each (item + count), so a
  retried request never counts a waiter twice.

The race between a publish and a registration is closed from both sides: a publisher writes its events,
then (when the reserve saw waiters) reads the waiters; a registering step writes its waiter, then reads
the topic's events after its anchor (:meth:`WaiterStore.look_back`). Both reads are strongly consistent,
so whichever writes last sees the other's write.

One gap is left by the order of a publish's own requests: it reserves its sequence ids (seeing no waiter
yet), and stores its events only later. If a waiter registers and looks back in between, it misses them,
and the publisher does not look for waiters. So after registering, the step reads the topic's counter
(:meth:`WaiterStore.anchor`): ids up to it that the look-back did not see may still be held by a publisher.
When there are any, the run is woken once more (its ``recheck``, a wake-up like a timer's) after
:func:`recheck_delay` — the longest a publisher can live (the worker's Lambda timeout, which is also its
lease; the API's is shorter) — and looks back again. Ids reserved after that read saw the waiter counted.
A publish finished later by its client's retry looks the waiters up itself (its plan does not record them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import query_all
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


# --- completing a waiting step -----------------------------------------------------------------------


def complete_step(
    run_id: str, step: str, *, result_json: str | None = None, error_json: str | None = None
) -> bool:
    """Record the waiting step's result (or ``error_json``, failing it) unless it no longer waits; ``True``
    when this call did. One conditional UpdateItem on the runs table."""
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
    try:
        settings.dynamodb().update_item(
            TableName=settings.get_settings().runs_table,
            Key={"pk": {"S": f"run#{run_id}"}, "sk": {"S": f"step#{step}"}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="#status = :waiting",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def wake(workflow_id: str, run_id: str, step: str) -> None:
    """Put the run's ``resume`` message on its workflow's queue (one SendMessageBatch)."""
    deliver([WorkflowMessage(workflow_id, "resume", run_id=run_id, step=step)])


def complete(
    workflow_id: str, run_id: str, step: str, *, result_json: str | None = None, error_json: str | None = None
) -> bool:
    """Complete the waiting step and wake its run; ``True`` when this completer won."""
    won = complete_step(run_id, step, result_json=result_json, error_json=error_json)
    wake(workflow_id, run_id, step)
    return won


def _now_iso() -> str:
    return utc_iso(datetime.now(UTC))


# --- event waiters -----------------------------------------------------------------------------------


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

    def matches(self, event: EventItem) -> bool:
        if event.sequence_id <= self.after:
            return False
        if self.event_type is not None and event.event_type != self.event_type:
            return False
        return all(
            key in event.data and event.data[key] == value for key, value in (self.match or {}).items()
        )

    def result_json(self, event: EventItem) -> str:
        """What the step returns: the event (``wait_for_event``), or its data (``suspend``)."""
        if self.kind == "resume":
            return json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
        return event.model_dump_json()


def _waiter_key(topic: str, run_id: str, step: str) -> Item:
    return {"pk": {"S": f"wait#{topic}"}, "sk": {"S": f"{run_id}#{step}"}}


def _counter_key(topic: str) -> Item:
    return {"pk": {"S": f"seq#{topic}"}, "sk": {"S": COUNTER_SK}}


def _encode(waiter: Waiter, expires_at: int) -> Item:
    item: Item = {
        **_waiter_key(waiter.topic, waiter.run_id, waiter.step),
        "wf": {"S": waiter.workflow_id},
        "run_id": {"S": waiter.run_id},
        "step": {"S": waiter.step},
        "after": {"N": str(waiter.after)},
        "kind": {"S": waiter.kind},
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
    )


def _cancelled_reasons(exc: ClientError) -> list[str | None]:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        raise exc
    return [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]


class WaiterStore:
    """Event waiters in the events table."""

    def __init__(self) -> None:
        self._client = settings.dynamodb()
        self._table = settings.get_settings().events_table

    def anchor(self, topic: str) -> int:
        """The topic's last sequence id handed out (0 when none): a step waits for events after it."""
        answer = self._client.get_item(
            TableName=self._table,
            Key=_counter_key(topic),
            ConsistentRead=True,
            ProjectionExpression="#last",
            ExpressionAttributeNames={"#last": "last"},
        )
        last = answer.get("Item", {}).get("last")
        return 0 if last is None else int(str(last["N"]))

    def register(self, waiter: Waiter, until: float | None) -> bool:
        """Store the waiter and count it on the topic (one transaction; registering twice is a no-op);
        ``True`` when this call stored it."""
        expires = int(until if until is not None else time.time()) + settings.get_settings().retention_seconds
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _encode(waiter, expires),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _counter_key(waiter.topic),
                            "UpdateExpression": "ADD waiters :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _cancelled_reasons(exc)[:1] != ["ConditionalCheckFailed"]:
                raise
            return False  # registered by an earlier try
        return True

    def remove(self, topic: str, run_id: str, step: str) -> None:
        """Delete the waiter and uncount it (one transaction; removing twice is a no-op)."""
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": _waiter_key(topic, run_id, step),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _counter_key(topic),
                            "UpdateExpression": "ADD waiters :minus",
                            "ExpressionAttributeValues": {":minus": {"N": "-1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _cancelled_reasons(exc)[:1] != ["ConditionalCheckFailed"]:
                raise

    def waiting_on(self, topic: str) -> list[Waiter]:
        """Every waiter of the topic (one strongly consistent Query, more only past 1 MB)."""
        return [_decode(topic, item) for item in self._query(f"wait#{topic}")]

    def look_back(self, topic: str, after: int) -> list[EventItem]:
        """The topic's stored events after sequence id ``after``, in order (strongly consistent; gap
        markers are passed)."""
        return EventStore(self._client, self._table).events_after(topic, after)

    def _query(self, pk: str) -> list[Item]:
        return query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        )


def recheck_delay() -> float:
    """How long after a registration no publisher can still hold a sequence id reserved before it."""
    return float(settings.get_settings().lease_seconds)


def unseen(after: int, reserved: int, events: list[EventItem]) -> int:
    """How many of the sequence ids in ``(after, reserved]`` are not among the looked-back ``events``."""
    return (reserved - after) - len({e.sequence_id for e in events if after < e.sequence_id <= reserved})


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
    store.remove(waiter.topic, waiter.run_id, waiter.step)
    return event if won else None


def match_published(topic: str, events: list[EventItem]) -> int:
    """The publish path's half of the race: after ``events`` are stored, hand them to the topic's waiters
    (one Query; per matched waiter one UpdateItem, one SendMessageBatch and one transaction)."""
    store = WaiterStore()
    matched = 0
    for waiter in store.waiting_on(topic):
        if settle(store, waiter, events) is not None:
            matched += 1
    if matched:
        logger.info("event waiters matched", extra={"topic": topic, "matched": matched})
    return matched

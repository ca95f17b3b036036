"""Event flow control: debounce, throttle and rate limits of event-triggered single-event workflows.

Each option keeps one small state item per workflow and key value (``flow#<workflow>#<kind>#<hash>``, in
the runs table, TTL'd), changed by optimistic concurrency: a strongly consistent GetItem, then a PutItem
conditional on the ``version`` read (a conflict reads again). Times are :mod:`polos.runtime.clock`'s.

- **Rate limit**: the window holds the runs granted in the last ``period`` (at most ``limit``, each with a
  tag of its run id, so a redelivery after a crash finds its own grant). An event beyond it gets a run item
  ``skipped`` (terminal, no execution, no steps), a ``RunsSkipped`` metric and a log line.
- **Throttle**: the window holds the last ``limit`` booked start times and the last ``limit`` actual starts.
  An event books the first time at which a start keeps at most ``limit`` bookings in any ``period`` (after
  every booking before it: arrival order, and ``sequence_id`` order within a delivery); booked now, it
  starts; booked later, its run is stored ``queued`` with ``waiting_for {"kind": "throttle", "key",
  "until"}`` and the event's message is sent again with that delay (SQS ``DelaySeconds``, 15 minutes at a
  time): nothing runs or is billed meanwhile. When it is due the start itself is counted in the window of
  actual starts (at most ``limit`` in any ``period``, however late the wake-ups come); over it, it waits
  again. Nothing is dropped: the message is acknowledged only once its run is stored and its wake-up sent.
- **Debounce**: the state is the key's current burst (``open`` → ``fired`` → ``released``): an event with
  no open burst starts one and sends its check (a ``debounce`` message delayed until the burst is due:
  ``period`` after its last event, at most ``timeout`` after its first); a later event joins it (the highest
  ``sequence_id`` is kept, the last-seen time moves on); the check re-arms itself until due, then marks the
  burst ``fired`` and sends the burst's last event again, ``released``: that message is the burst's run.
  Whoever meets a ``fired`` burst (its check again after a crash, or the next event) sends the release
  again before the burst is ``released`` and a new one may begin: a release is never lost, and twice it
  is the same event, so the same run. Events at or below the highest released ``sequence_id`` (late or
  duplicate deliveries) get no run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import ClientError

from polos.aws import observability, settings
from polos.flow_control import FlowLimit
from polos.payloads import EventItem
from polos.publish.events import EventRef, EventStore
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock
from polos.runtime.journal import RUN_SK, Journal, decode_run, now_iso, run_pk
from polos.runtime.records import RunRecord
from polos.runtime.status import RunStatus
from polos.timestamps import utc_iso

if TYPE_CHECKING:
    from polos.definition import Workflow

logger = observability.logger
Verdict = Literal["run", "done"]
State = dict[str, Any]
_T = TypeVar("_T")

STATE_SK = "flow"
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds
MAX_TRIES = 50  # conflicting writers of one key's state before the record is left for redelivery
KEEP_SECONDS = 24 * 3600  # a state item outlives its last use by this much beyond its period / timeout
MAX_KEY_SHOWN = 256  # characters of a key value shown in ``waiting_for``


class FlowStateContention(Exception):
    """A key's state changed under every try: the record is left for SQS to deliver again."""


# --- keys and state ---------------------------------------------------------------------------------------


def key_value(path: str | None, event: EventItem) -> str | None:
    """The value of the dotted ``path`` in the event (``None``: no key, or the path is absent)."""
    if path is None:
        return None
    node: Any = event.model_dump(mode="json")
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return None
    return node if isinstance(node, str) else json.dumps(node, sort_keys=True, separators=(",", ":"))


def state_pk(workflow_id: str, kind: str, value: str | None) -> str:
    """The state item of one key value (hashed: any value fits a partition key)."""
    digest = hashlib.sha256(json.dumps(value).encode()).hexdigest()[:32]
    return f"flow#{workflow_id}#{kind}#{digest}"


def _read(pk: str) -> tuple[State | None, int]:
    answer = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": pk}, "sk": {"S": STATE_SK}},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    if not item:
        return None, 0
    return json.loads(item["state"]["S"]), int(item["version"]["N"])


def _write(pk: str, state: State, version: int, keep: float) -> bool:
    """Store ``state`` if the item is still at ``version``; ``False`` when another writer came first."""
    item = {
        "pk": {"S": pk},
        "sk": {"S": STATE_SK},
        "state": {"S": json.dumps(state, separators=(",", ":"))},
        "version": {"N": str(version + 1)},
        "expires_at": {"N": str(int(clock.now() + keep + KEEP_SECONDS))},
    }
    condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
    if version:
        condition = {
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }
    try:
        settings.dynamodb().put_item(TableName=settings.get_settings().runs_table, Item=item, **condition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _update(pk: str, keep: float, change: Callable[[State | None], tuple[State | None, _T]]) -> _T:
    """Apply ``change`` (state → new state or ``None`` for no write, and a result) until it is stored."""
    for _ in range(MAX_TRIES):
        state, version = _read(pk)
        new, result = change(state)
        if new is None or _write(pk, new, version, keep):
            return result
    raise FlowStateContention(f"flow state {pk} changed under {MAX_TRIES} tries")


def _tag(run_id: str) -> str:
    return run_id.removeprefix("run_")[:12]


def _recent(entries: list[list[Any]], now: float, period: float) -> list[list[Any]]:
    """The entries (``[time, tag]``) of the sliding window ``(now - period, now]``, oldest first."""
    return sorted((entry for entry in entries if entry[0] > now - period), key=lambda entry: entry[0])


# --- rate limit ------------------------------------------------------------------------------------------


def _grant(limit: FlowLimit, tag: str) -> Callable[[State | None], tuple[State | None, bool]]:
    def change(state: State | None) -> tuple[State | None, bool]:
        now = clock.now()
        granted = _recent((state or {}).get("granted", []), now, limit.period)
        if any(entry[1] == tag for entry in granted):
            return None, True
        if len(granted) >= limit.limit:
            return None, False
        return {"granted": [*granted, [now, tag]]}, True

    return change


def _event_run(
    wf: Workflow, run_id: str, event: EventItem, status: RunStatus, waiting_for_json: str | None = None
) -> RunRecord:
    """The run item of an event that flow control did not start now (``skipped``, or ``queued``)."""
    stamp = now_iso()
    return RunRecord(
        run_id=run_id,
        workflow_id=wf.id,
        status=status,
        attempts=0,
        trigger_type="event",
        created_at=utc_iso(event.created_at),  # where the runs API lists it (polos.runtime.event_runs)
        updated_at=stamp,
        event_refs=[EventRef(event.topic, event.sequence_id, event.id)],
        waiting_for_json=waiting_for_json,
    )


def _rate_limit(wf: Workflow, limit: FlowLimit, run_id: str, event: EventItem) -> Verdict:
    if _stored_run(run_id) is not None:  # granted (or skipped) before
        return "run"
    key = key_value(limit.key, event)
    if _update(state_pk(wf.id, "rate", key), limit.period, _grant(limit, _tag(run_id))):
        return "run"
    Journal().create_queued(_event_run(wf, run_id, event, "skipped"))
    observability.count("RunsSkipped")
    logger.info(
        "event skipped: over the workflow's rate limit",
        extra={
            "run_id": run_id,
            "workflow_id": wf.id,
            "event_id": event.id,
            "key": _shown(key),
            **limit.as_dict(),
        },
    )
    return "done"


# --- throttle --------------------------------------------------------------------------------------------


def _book(limit: FlowLimit, tag: str) -> Callable[[State | None], tuple[State | None, float]]:
    """Book the event's start: now when the window allows it and nobody waits before it, else later."""

    def change(state: State | None) -> tuple[State | None, float]:
        now = clock.now()
        booked: list[float] = (state or {}).get("booked", [])
        started = _recent((state or {}).get("started", []), now, limit.period)
        if any(entry[1] == tag for entry in started):
            return None, now
        at = max([now, *booked[-1:]])
        if len(booked) >= limit.limit:
            at = max(at, booked[-limit.limit] + limit.period)
        if len(started) >= limit.limit:
            at = max(at, started[-limit.limit][0] + limit.period)
        if at <= now:
            started = [*started, [now, tag]]
        return {"booked": [*booked, at][-limit.limit :], "started": started[-limit.limit :]}, at

    return change


def _start(limit: FlowLimit, tag: str) -> Callable[[State | None], tuple[State | None, float | None]]:
    """A due run's start, counted in the window of actual starts; else when to try again."""

    def change(state: State | None) -> tuple[State | None, float | None]:
        now = clock.now()
        started = _recent((state or {}).get("started", []), now, limit.period)
        if any(entry[1] == tag for entry in started):
            return None, None
        if len(started) >= limit.limit:
            return None, started[-limit.limit][0] + limit.period
        return {**(state or {}), "started": [*started, [now, tag]][-limit.limit :]}, None

    return change


def _throttle(wf: Workflow, limit: FlowLimit, run_id: str, event: EventItem) -> Verdict:
    key = key_value(limit.key, event)
    pk = state_pk(wf.id, "throttle", key)
    run = _stored_run(run_id)
    if run is None:
        until = _update(pk, limit.period, _book(limit, _tag(run_id)))
        if until <= clock.now():
            return "run"
        waiting = {"step": "", "kind": "throttle", "key": _shown(key), "until": until}
        queued = _event_run(wf, run_id, event, "queued", json.dumps(waiting, separators=(",", ":")))
        Journal().create_queued(queued)
        observability.count("RunsThrottled")
        logger.info("run throttled", extra={"run_id": run_id, "workflow_id": wf.id, "until": until})
        _send_later(wf, event, until)
        return "done"
    waited = throttle_wait(run)
    if waited is None:  # started before (or cancelled: the executor finds it finished)
        return "run"
    if clock.now() < float(waited["until"]):
        _send_later(wf, event, float(waited["until"]))
        return "done"
    again = _update(pk, limit.period, _start(limit, _tag(run_id)))
    if again is None:
        return "run"
    _send_later(wf, event, again)
    return "done"


def throttle_wait(run: RunRecord) -> dict[str, Any] | None:
    """What a run not started yet waits for under a throttle (``None``: it does not)."""
    if run.status != "queued" or run.attempts or not run.waiting_for_json:
        return None
    waiting: dict[str, Any] = json.loads(run.waiting_for_json)
    return waiting if waiting.get("kind") == "throttle" else None


def waiting_view(run: RunRecord) -> dict[str, Any] | None:
    """A throttled run's ``waiting_for`` in the runs API: ``{"kind": "throttle", "key", "until"}``."""
    waiting = throttle_wait(run)
    if waiting is None:
        return None
    until = utc_iso(datetime.fromtimestamp(float(waiting["until"]), UTC))
    return {"kind": "throttle", "key": waiting.get("key"), "until": until}


def _send_later(wf: Workflow, event: EventItem, until: float) -> None:
    """The event's message again, delayed until ``until`` (at most 15 minutes at a time)."""
    delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(until - clock.now())))
    deliver([WorkflowMessage(wf.id, "event", event=event, delay_seconds=delay)])


# --- debounce --------------------------------------------------------------------------------------------

Burst = tuple[str, State]


def _ref(state: State) -> EventRef:
    topic, sequence_id, event_id = state["latest"]
    return EventRef(str(topic), int(sequence_id), str(event_id))


def _joined(event: EventItem) -> Callable[[State | None], tuple[State | None, Burst]]:
    def change(state: State | None) -> tuple[State | None, Burst]:
        now, seq = clock.now(), event.sequence_id
        latest = [event.topic, seq, event.id]
        if state is not None and state["phase"] == "fired":
            return None, ("help", state)
        if state is None or state["phase"] == "released":
            if state is not None and seq <= state["high"]:
                return None, ("stale", state)
            burst = 1 + (state["burst"] if state else 0)
            new = {"burst": burst, "phase": "open", "first_at": now, "last_at": now, "first_seq": seq}
            new |= {"latest": latest, "high": seq}
            return new, ("arm", new)
        if seq > state["high"]:
            new = {**state, "latest": latest, "last_at": now, "high": seq}
            return new, ("joined", new)
        return None, ("arm" if seq == state["first_seq"] else "joined", state)

    return change


def _debounce(wf: Workflow, limit: FlowLimit, event: EventItem) -> None:
    pk = state_pk(wf.id, "debounce", key_value(limit.key, event))
    while True:
        verdict, state = _update(pk, limit.timeout, _joined(event))
        if verdict == "help":  # the burst before fired but may not have been released: release it first
            _release(wf, limit, pk, state)
            continue
        if verdict == "arm":  # a new burst (or its first event again, after a crash): its check
            _arm(wf, limit, pk, state)
        return


def _due(limit: FlowLimit, state: State) -> float:
    return float(min(state["last_at"] + limit.period, state["first_at"] + limit.timeout))


def _arm(wf: Workflow, limit: FlowLimit, pk: str, state: State) -> None:
    delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(_due(limit, state) - clock.now())))
    deliver([WorkflowMessage(wf.id, "debounce", run_id=pk, step=str(state["burst"]), delay_seconds=delay)])


def _release(wf: Workflow, limit: FlowLimit, pk: str, state: State) -> None:
    """Send the fired burst's last event as its run (again: the same run), then mark it released."""
    found = EventStore().get_many([_ref(state)])
    if found:
        deliver([WorkflowMessage(wf.id, "event", event=found[0], released=True)])
    else:
        logger.error("debounced event no longer stored; its burst gets no run", extra={"workflow_id": wf.id})

    def released(current: State | None) -> tuple[State | None, None]:
        if current is None or current["burst"] != state["burst"] or current["phase"] != "fired":
            return None, None
        return {**current, "phase": "released"}, None

    _update(pk, limit.timeout, released)
    logger.info("debounced burst released", extra={"workflow_id": wf.id, "event_id": state["latest"][2]})


def _check(wf: Workflow, limit: FlowLimit, pk: str, burst: int) -> None:
    """A burst's check: not due yet, it re-arms; due, the burst fires and is released."""

    def change(state: State | None) -> tuple[State | None, Burst]:
        if state is None or state["burst"] != burst or state["phase"] == "released":
            return None, ("done", state or {})
        if state["phase"] == "fired":
            return None, ("release", state)
        if clock.now() < _due(limit, state):
            return None, ("wait", state)
        fired = {**state, "phase": "fired"}
        return fired, ("release", fired)

    verdict, state = _update(pk, limit.timeout, change)
    if verdict == "wait":
        _arm(wf, limit, pk, state)
    elif verdict == "release":
        _release(wf, limit, pk, state)


# --- the worker's door -----------------------------------------------------------------------------------


def _stored_run(run_id: str) -> RunRecord | None:
    answer = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return None if not item or "status" not in item else decode_run(item)


def _shown(key: str | None) -> str | None:
    return None if key is None else key[:MAX_KEY_SHOWN]


def _option(wf: Workflow, kind: str) -> FlowLimit | None:
    return next((limit for limit in wf.flow if limit.kind == kind), None)


def admit(wf: Workflow, run_id: str, messages: list[WorkflowMessage]) -> Verdict:
    """Whether the run of these messages (one event's deliveries, or debounce checks) may execute now
    (``run``), or the messages are done with (``done``: debounced, skipped, throttled until later)."""
    if any(message.kind == "resume" for message in messages):  # a wake-up: the run started long ago
        return "run"
    debounce = _option(wf, "debounce")
    first = messages[0]
    if first.kind == "debounce":
        for message in messages:
            if debounce is not None and message.run_id is not None and message.step is not None:
                _check(wf, debounce, message.run_id, int(message.step))
        return "done"
    event = first.event
    if event is None:
        return "run"
    if debounce is not None and not any(message.released for message in messages):
        _debounce(wf, debounce, event)
        return "done"
    rate = _option(wf, "rate_limit")
    if rate is not None and _rate_limit(wf, rate, run_id, event) == "done":
        return "done"
    throttle = _option(wf, "throttle")
    if throttle is not None:
        return _throttle(wf, throttle, run_id, event)
    return "run"


class Admissions:
    """One invocation's admissions, in ``sequence_id`` order per workflow and key value: an event waits for
    those of its key with lower ids delivered with it (SQS hands them over in any order)."""

    def __init__(self, pending: list[tuple[Workflow, WorkflowMessage]]) -> None:
        self._before: dict[tuple[str, int], list[tuple[str, int]]] = {}
        groups: dict[str, set[int]] = {}
        for wf, message in pending:
            group = self._group(wf, message)
            if group is not None and message.event is not None:
                groups.setdefault(group, set()).add(message.event.sequence_id)
        for group, seqs in groups.items():
            ordered = sorted(seqs)
            for index, seq in enumerate(ordered):
                self._before[(group, seq)] = [(group, earlier) for earlier in ordered[:index]]
        self._done: dict[tuple[str, int], asyncio.Event] = {}

    @staticmethod
    def _group(wf: Workflow, message: WorkflowMessage) -> str | None:
        if not wf.flow or message.kind != "event" or message.event is None:
            return None
        return "|".join(state_pk(wf.id, limit.kind, key_value(limit.key, message.event)) for limit in wf.flow)

    def _slot(self, wf: Workflow, messages: list[WorkflowMessage]) -> tuple[str, int] | None:
        """The key and sequence id of the event among ``messages`` (a run's records: maybe wake-ups too)."""
        for message in messages:
            group = self._group(wf, message)
            if group is not None and message.event is not None:
                return group, message.event.sequence_id
        return None

    def _event(self, slot: tuple[str, int]) -> asyncio.Event:
        return self._done.setdefault(slot, asyncio.Event())

    async def admit(self, wf: Workflow, run_id: str, messages: list[WorkflowMessage]) -> Verdict:
        """:func:`admit`, after the admissions of the same key with lower sequence ids."""
        if not wf.flow:
            return "run"
        slot = self._slot(wf, messages)
        try:
            for earlier in self._before.get(slot, []) if slot is not None else []:
                await self._event(earlier).wait()
            return await asyncio.to_thread(admit, wf, run_id, messages)
        finally:
            if slot is not None:
                self._event(slot).set()

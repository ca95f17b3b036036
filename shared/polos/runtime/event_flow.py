"""Event flow control: debounce, throttle and rate limits of event-triggered single-event workflows.

Each option keeps small state items per workflow and key value (``flow#<workflow>#<kind>#<hash>``, in
the runs table, TTL'd), changed by optimistic concurrency: a strongly consistent GetItem, then a PutItem
conditional on the ``version`` read (a conflict reads again). Times are :mod:`polos.runtime.clock`'s.

- **Shards**: a throttle's or rate limit's window is :func:`shards` items (the key's item, then
  ``<item>#1``, ...), each with its share of ``limit`` (the shares add up to it: at most ``limit`` in any
  period over all of them), as many as keep each under 80 % of an item's 1,000 write units a second at
  ``limit / period`` starts a second (one when the rate is low: up to some 20 to 50 a second). A run tries the
  shard of its run id's hash first; when that one has no room now, every shard (one BatchGetItem), and
  takes the earliest turn among them.

- **Rate limit**: each shard holds the runs it granted in the last ``period`` (at most its share, each with
  a tag of its run id, so a redelivery after a crash finds its own grant). An event beyond it gets a run item
  ``skipped`` (terminal, no execution, no steps), a ``RunsSkipped`` metric and a log line.
- **Throttle**: a shard holds its bookings (``[at, sequence_id, tag]``: the last ``share`` of them, or the
  waiting ones if more, at most :data:`WAITING_KEPT`) and its last ``share`` actual starts. An event books
  the first time at which a start keeps at most ``share`` bookings in any ``period``, after every booking
  before it; but among the waiting (booked later) it goes by ``sequence_id``: it takes the turn of the first
  waiting booking with a higher id, and each of those moves to the next turn, the last to a new one. Booked
  now, it starts; booked later, its run is stored ``queued`` with ``waiting_for {"kind": "throttle", "key",
  "until", "shard"}`` and the event's message is sent again with that delay (SQS ``DelaySeconds``, 15
  minutes at a time): nothing runs or is billed meanwhile. When it is due, it looks up its booking: moved
  later (a lower id took its turn), its message is sent again for the new time; else the start itself is
  counted in the window of actual starts (at most ``share`` in any ``period``, however late the wake-ups
  come); over it, it waits again. Nothing is dropped: the message is acknowledged only once its run is
  stored and its wake-up sent; a redelivery finds its own booking or start (by its run id's tag).
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
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import ClientError

from polos.aws import chunking, observability, settings
from polos.flow_control import FlowLimit
from polos.payloads import EventItem
from polos.publish.events import EventRef, EventStore
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock
from polos.runtime.journal import RUN_SK, Journal, decode_run, now_iso, run_pk
from polos.runtime.records import RunRecord
from polos.runtime.slots import shard_caps
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
# A window's shards (see :func:`shards`): an item's write units a second at limit / period starts, at most
ITEM_WRITE_UNITS = 800  # 80 % of DynamoDB's 1,000 a second per item
ENTRY_BYTES = 48  # one booking ``[at, sequence_id, tag]`` (or start / grant ``[at, tag]``) in the item
ITEM_BYTES = 200  # an item's keys, version and expiry
WAITING_KEPT = 64  # bookings a throttle shard keeps beyond its share: the waiting runs it can reorder


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


def _decoded(item: dict[str, Any] | None) -> tuple[State | None, int]:
    if not item:
        return None, 0
    return json.loads(item["state"]["S"]), int(item["version"]["N"])


def _read(pk: str) -> tuple[State | None, int]:
    answer = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": pk}, "sk": {"S": STATE_SK}},
        ConsistentRead=True,
    )
    return _decoded(answer.get("Item"))


def _read_many(pks: list[str]) -> list[tuple[State | None, int]]:
    """The states of ``pks`` (strongly consistent ``BatchGetItem``s), in their order."""
    table = settings.get_settings().runs_table
    found = chunking.get_all(settings.dynamodb(), table, [(pk, STATE_SK) for pk in pks], consistent=True)
    return [_decoded(found.get((pk, STATE_SK))) for pk in pks]


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


def _place(
    pks: list[str],
    home: int,
    keep: float,
    change_for: Callable[[int], Callable[[State | None], tuple[State | None, _T]]],
    score: Callable[[_T], float],
) -> tuple[int, _T]:
    """Apply a shard's change (``change_for(n)``) to the ``home`` shard; when it scores above 0 (no room
    now, nothing of this run found), to every shard, stored on the one that scores lowest (the first on a
    tie, home first). The shard and the change's result."""
    for _ in range(MAX_TRIES):
        state, version = _read(pks[home])
        new, result = change_for(home)(state)
        best = (home, new, version, result)
        if score(result) > 0 and len(pks) > 1:
            others = [n for n in range(len(pks)) if n != home]
            for n, (other, other_version) in zip(others, _read_many([pks[n] for n in others]), strict=True):
                other_new, other_result = change_for(n)(other)
                if score(other_result) < score(best[3]):
                    best = (n, other_new, other_version, other_result)
        shard, new, version, result = best
        if new is None or _write(pks[shard], new, version, keep):
            return shard, result
    raise FlowStateContention(f"flow state {pks[home]} changed under {MAX_TRIES} tries")


def shards(limit: FlowLimit) -> int:
    """How many items hold a throttle's or rate limit's window: the fewest that keep each under
    :data:`ITEM_WRITE_UNITS` at ``limit / period`` starts a second at its fullest (a throttled start: two
    writes, its booking and its start; a grant: one; each as many units as the item's KB). One when the
    rate is low."""
    for count in range(1, limit.limit + 1):
        share = math.ceil(limit.limit / count)
        if item_write_units(limit.kind, share) * share / limit.period <= ITEM_WRITE_UNITS:
            return count
    return limit.limit


def item_write_units(kind: str, share: int) -> int:
    """The write units one start takes on a shard of ``share`` at its fullest (see :func:`shards`)."""
    if kind == "throttle":  # its booking and its start; the bookings kept and the starts
        return 2 * math.ceil((ITEM_BYTES + ENTRY_BYTES * (share + max(share, WAITING_KEPT))) / 1024)
    return math.ceil((ITEM_BYTES + ENTRY_BYTES * share) / 1024)  # a grant; the grants


def shard_pks(pk: str, count: int) -> list[str]:
    """A window's shard items: the key's own state item first (so one shard is the item it always was)."""
    return [pk, *(f"{pk}#{n}" for n in range(1, count))]


def _home(run_id: str, count: int) -> int:
    """The shard a run tries first: its run id spreads the runs of a key evenly."""
    return zlib.crc32(run_id.encode()) % count


def _tag(run_id: str) -> str:
    return run_id.removeprefix("run_")[:12]


def _recent(entries: list[list[Any]], now: float, period: float) -> list[list[Any]]:
    """The entries (``[time, tag]``) of the sliding window ``(now - period, now]``, oldest first."""
    return sorted((entry for entry in entries if entry[0] > now - period), key=lambda entry: entry[0])


# --- rate limit ------------------------------------------------------------------------------------------

Grant = tuple[bool, bool]  # granted, and whether it was this run's own grant from before


def _grant(cap: int, period: float, tag: str) -> Callable[[State | None], tuple[State | None, Grant]]:
    def change(state: State | None) -> tuple[State | None, Grant]:
        now = clock.now()
        granted = _recent((state or {}).get("granted", []), now, period)
        if any(entry[1] == tag for entry in granted):
            return None, (True, True)
        if len(granted) >= cap:
            return None, (False, False)
        return {"granted": [*granted, [now, tag]]}, (True, False)

    return change


def _grant_score(grant: Grant) -> float:
    granted, own = grant
    return -1 if own else 0 if granted else 1


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
    pks = shard_pks(state_pk(wf.id, "rate", key), shards(limit))
    caps = shard_caps(limit.limit, len(pks))
    tag = _tag(run_id)
    _, (granted, _) = _place(
        pks, _home(run_id, len(pks)), limit.period, lambda n: _grant(caps[n], limit.period, tag), _grant_score
    )
    if granted:
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

Turn = tuple[float, bool]  # when the run starts (now or earlier: at once), and whether it was booked before


def _bookings(state: State | None) -> list[list[Any]]:
    """A shard's bookings ``[at, sequence_id, tag]``, by time (a bare time: a booking of an older version)."""
    entries = (state or {}).get("booked", [])
    return sorted(entry if isinstance(entry, list) else [entry, 0, ""] for entry in entries)


def _kept(bookings: list[list[Any]], cap: int, now: float) -> list[list[Any]]:
    """The bookings a shard keeps: the last ``cap`` (the window's rule), or the waiting ones if more, at most
    :data:`WAITING_KEPT` (the latest: the earliest waiting wake up by their own time)."""
    ordered = sorted(bookings)
    waiting = sum(1 for entry in ordered if entry[0] > now)
    return ordered[-max(cap, min(waiting, WAITING_KEPT)) :]


def _next_free(
    booked: list[list[Any]], started: list[list[Any]], cap: int, period: float, now: float
) -> float:
    """The earliest start a booking after every other keeps at most ``cap`` bookings and starts in any
    ``period``."""
    at = max([now, *(entry[0] for entry in booked[-1:])])
    if len(booked) >= cap:
        at = max(at, booked[-cap][0] + period)
    if len(started) >= cap:
        at = max(at, started[-cap][0] + period)
    return float(at)


def _counted(
    state: State | None, started: list[list[Any]], cap: int, period: float, tag: str
) -> tuple[State | None, Turn]:
    """A due run's start, counted in the window of actual starts (``started``); else when to try again."""
    now = clock.now()
    if len(started) >= cap:
        return None, (float(started[-cap][0] + period), True)
    return {**(state or {}), "started": [*started, [now, tag]][-cap:]}, (now, True)


def _take(state: State | None, cap: int, period: float, tag: str) -> tuple[State | None, Turn] | None:
    """A run's turn when its booking (or start) is in ``state``: started before, waiting for a booking
    moved later, or due (:func:`_counted`). ``None``: nothing of the run in ``state``."""
    now = clock.now()
    started = _recent((state or {}).get("started", []), now, period)
    if any(entry[1] == tag for entry in started):
        return None, (now, True)
    mine = next((entry for entry in _bookings(state) if entry[2] == tag), None)
    if mine is None:
        return None
    if mine[0] > now:
        return None, (float(mine[0]), True)
    return _counted(state, started, cap, period, tag)


def _book(cap: int, period: float, tag: str, seq: int) -> Callable[[State | None], tuple[State | None, Turn]]:
    """An event's turn: its own booking if it has one, else a new one: now when the window allows it and
    nobody waits, else later, in ``sequence_id`` order among the waiting (an event takes the turn of the
    first waiting one with a higher id, each of those moves to the next turn, the last to a new one)."""

    def change(state: State | None) -> tuple[State | None, Turn]:
        taken = _take(state, cap, period, tag)
        if taken is not None:
            return taken
        now = clock.now()
        booked = _bookings(state)
        started = _recent((state or {}).get("started", []), now, period)
        later = [entry for entry in booked if entry[0] > now and entry[1] > seq]
        turns = [entry[0] for entry in later] + [_next_free(booked, started, cap, period, now)]
        moved = {entry[2]: at for entry, at in zip(later, turns[1:], strict=True)}
        at = turns[0]
        booked = [[moved.get(entry[2], entry[0]), entry[1], entry[2]] for entry in booked] + [[at, seq, tag]]
        if at <= now:
            started = [*started, [now, tag]]
        return {"booked": _kept(booked, cap, now), "started": started[-cap:]}, (at, False)

    return change


def _start(cap: int, period: float, tag: str) -> Callable[[State | None], tuple[State | None, Turn]]:
    """A woken run's start (:func:`_take`); one whose booking the shard no longer keeps starts when the
    window of actual starts allows it."""

    def change(state: State | None) -> tuple[State | None, Turn]:
        taken = _take(state, cap, period, tag)
        if taken is not None:
            return taken
        return _counted(
            state, _recent((state or {}).get("started", []), clock.now(), period), cap, period, tag
        )

    return change


def _turn_score(turn: Turn) -> float:
    at, own = turn
    return -1 if own else max(0.0, at - clock.now())


def _throttle(wf: Workflow, limit: FlowLimit, run_id: str, event: EventItem) -> Verdict:
    key = key_value(limit.key, event)
    pks = shard_pks(state_pk(wf.id, "throttle", key), shards(limit))
    caps = shard_caps(limit.limit, len(pks))
    tag = _tag(run_id)
    run = _stored_run(run_id)
    if run is None:
        shard, (until, _) = _place(
            pks,
            _home(run_id, len(pks)),
            limit.period,
            lambda n: _book(caps[n], limit.period, tag, event.sequence_id),
            _turn_score,
        )
        if until <= clock.now():
            return "run"
        waiting = {"step": "", "kind": "throttle", "key": _shown(key), "until": until, "shard": shard}
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
    shard = min(int(waited.get("shard", 0)), len(pks) - 1)
    _, (again, _) = _place(
        pks, shard, limit.period, lambda n: _start(caps[n], limit.period, tag), _turn_score
    )
    if again <= clock.now():
        return "run"
    _send_later(wf, event, again)  # its turn moved (a lower sequence_id took it), or the window is full
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

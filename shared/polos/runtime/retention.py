"""A waiting run, and everything it reads when it wakes, lives as long as it waits (DESIGN §3 Waits).

Items expire by TTL (``expires_at``) a retention period after they are written: a run's items after its
creation or their journaling, an event after it was published. What a waiting run reads when it wakes:
every item of its partition (run item, steps, a batch's member chunks), the events that triggered it (a
single event's or a batch's payload is rebuilt from the events table) and, for ``wait_for_event`` and
``suspend``, the waiter that completes its step.

Cost: nothing is written while the wait ends a margin before the first of these expires (a wait shorter
than the retention less the run's age). A timer that ends later extends them as the run starts waiting;
any other wait (untimed, or with a later timeout) gets ``keep`` instead, a wake-up a margin before they
expire: should the run still wait then, the worker (:func:`renew`, no replay of the workflow) extends them,
to a retention after the wait's timeout or, untimed, after now, and sets the next ``keep``. So a wait that
ends early extends nothing, and nothing is kept more than a retention past the wait that needed it. An
extension is one Query of the partition and one conditional UpdateItem (billed by the item's size) per
item that expires sooner, per event and for the waiter, all made before the run is marked waiting (or
waiting again); that write keeps the run item too and records ``kept_until``. A crash in between leaves
the run running (its redelivery extends again) or, in :func:`renew`, waiting as it was (its keep-alive,
still armed, comes again).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.publish.events import event_keys
from polos.publish.waiters import waiter_key
from polos.runtime import batches, clock, timers
from polos.runtime.journal import RUN_SK, Item, Journal
from polos.runtime.waits import WaitingFor, is_due
from polos.timestamps import parse_utc_iso

if TYPE_CHECKING:
    from polos.runtime.records import RunRecord, StepRecord

# A run is woken to keep what it reads this long before that would expire (a quarter of a short retention).
MARGIN_SECONDS = 86_400
PARALLEL_UPDATES = 16  # a batch's events are extended this many at a time


def margin() -> float:
    return min(MARGIN_SECONDS, settings.get_settings().retention_seconds / 4)


def _epoch(stamp: str) -> float:
    return parse_utc_iso(stamp).timestamp()


def _events_written(raw: Any) -> list[float]:
    """When the events of a handler's input (one event, or a batch's ``events``) were published."""
    if not isinstance(raw, dict):
        return []
    events = raw["events"] if isinstance(raw.get("events"), list) else [raw]
    return [
        _epoch(str(event["created_at"]))
        for event in events
        if isinstance(event, dict) and "created_at" in event
    ]


def kept_until(run: RunRecord, raw: Any) -> float:
    """Until when everything ``run`` reads when it wakes is stored at least: a retention after the oldest of
    it was written (the run's creation, or an older event of its input ``raw``), or what was extended."""
    written = [_epoch(run.created_at)]
    if run.trigger_type in ("event", "batch"):
        written += _events_written(raw)
    return max(min(written) + settings.get_settings().retention_seconds, run.kept_until or 0.0)


@dataclass(frozen=True, slots=True)
class Kept:
    """The run's copy of its wait (``keep`` set when a later wake-up must extend), and until when this
    call kept everything else the run reads (``None``: nothing was extended)."""

    waiting: WaitingFor
    kept_until: int | None = None


def keep_waiting(journal: Journal, run: RunRecord, raw: Any, waiting: WaitingFor) -> Kept:
    """Make what ``run`` (with input ``raw``) reads when it wakes outlive ``waiting``; see the module."""
    now = clock.now()
    lasts = kept_until(run, raw)
    early = margin()
    if waiting.until is not None and waiting.until <= lasts - early:
        return Kept(replace(waiting, keep=None))
    if waiting.kind != "timer" and now < lasts - early:
        return Kept(replace(waiting, keep=lasts - early))
    return _extended(journal, run, waiting, now)


def _extended(journal: Journal, run: RunRecord, waiting: WaitingFor, now: float) -> Kept:
    """Extend what ``run`` reads to a retention after the wait's timeout, or (untimed) after ``now``."""
    end = waiting.until if waiting.until is not None else now
    horizon = int(end + settings.get_settings().retention_seconds)
    extend(journal, run, waiting, horizon)
    return Kept(replace(waiting, keep=None if waiting.until is not None else horizon - margin()), horizon)


def keep_due(waiting: WaitingFor, step: StepRecord | None, now: float) -> bool:
    """Whether a waiting run is due only to keep what it reads: it still waits (see ``is_due``)."""
    if waiting.keep is None or now < waiting.keep:
        return False
    return not is_due(replace(waiting, keep=None), step, now)


def renew(journal: Journal, run: RunRecord, waiting: WaitingFor) -> bool:
    """The keep-alive of a run that still waits (``waiting``, the run's copy): extend what it reads, arm
    its next wake-up, then record the renewed wait on the run item, only if the run still waits as it did
    (``False``: it moved on meanwhile, and what it does now keeps what it needs)."""
    kept = _extended(journal, run, waiting, clock.now())
    timers.arm(run.workflow_id, run.run_id, kept.waiting)
    return journal.rewait(
        run.run_id, str(run.waiting_for_json), kept.waiting.to_json(), int(kept.kept_until or 0)
    )


def extend(journal: Journal, run: RunRecord, waiting: WaitingFor, horizon: int) -> int:
    """Keep every item ``run`` reads when it wakes (but its run item) until ``horizon``; how many items
    were written (items already kept as long, or gone, are left as they are). A single-event run gets its
    index entry then (:meth:`Journal.index_run`)."""
    items = journal.query_partition(run.run_id)
    run_item = next((item for item in items if item["sk"]["S"] == RUN_SK), None)
    if run.trigger_type == "event" and run_item is not None and "wf" not in run_item:
        journal.index_run(run.run_id, run.workflow_id)  # listed by the index once its event's blocks expire
    targets: list[tuple[str, Item]] = [
        (journal.table, {"pk": item["pk"], "sk": item["sk"]})
        for item in items
        if item["sk"]["S"] != RUN_SK and "expires_at" in item and float(item["expires_at"]["N"]) < horizon
    ]
    events_table = settings.get_settings().events_table
    refs = batches.members(items) if run.trigger_type == "batch" else run.event_refs
    # Either key an event may be at (the one it is not at is left alone: its conditional write fails).
    targets += [(events_table, key) for ref in refs for key in event_keys(ref.topic, ref.sequence_id)]
    if waiting.topic is not None:
        targets.append((events_table, waiter_key(waiting.topic, run.run_id, waiting.step, waiting.match)))
    if not targets:
        return 0
    with ThreadPoolExecutor(max_workers=min(PARALLEL_UPDATES, len(targets))) as pool:
        return sum(pool.map(lambda target: _keep_item(target[0], target[1], horizon), targets))


def _keep_item(table: str, key: Item, horizon: int) -> int:
    """Move one item's ``expires_at`` up to ``horizon`` (never down, never onto an item that is gone)."""
    try:
        settings.dynamodb().update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET expires_at = :horizon",
            ConditionExpression="expires_at < :horizon",
            ExpressionAttributeValues={":horizon": {"N": str(horizon)}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return 0
    return 1

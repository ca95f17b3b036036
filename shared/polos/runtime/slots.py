"""Concurrency slots: at most ``limit`` runs of a queue (per concurrency key) execute at once.

The worker makes one call before a run's attempt executes: :func:`admit`. It takes a slot, or parks the
run ``queued`` (``waiting_for {"kind": "concurrency"}``) in the key's backlog and acknowledges its message:
a queued run holds no Lambda, receive or timer. Every end of an attempt (completed, failed, retried,
waiting, cancelled, timed out) gives the slot back and hands on: the backlog's first run not handed on yet
gets an ``invoke`` message (:func:`release`). Nothing polls.

State, in the runs table (no new table, no new grant):

- a key's slots: ``shards(limit)`` items ``slot#<queue>#<key>#<n>`` (sk ``slot``), each with ``held`` (a
  count) and one attribute ``h#<run id>`` per holder whose value is the holding attempt's lease end.
  Taking is ONE conditional UpdateItem (``held < cap``); freeing is one more (``REMOVE`` conditional on the
  very lease taken, so a later attempt's slot is never freed by an earlier one). A holder whose lease
  passed (its attempt died) is evicted by the next taker that finds the shard full, in the same write:
  a dead attempt's slot is free after its lease, never later. A run retaking its own slot (a redelivery
  after a crash) finds its attribute and keeps one slot.
- a key's backlog: items ``qwait#<queue>#<key>`` sorted by the run's order (events by ``sequence_id``,
  other runs by creation time), also in the ``by_workflow`` index under ``~queue#<queue>`` (the queues
  API's listing). ``handed`` marks the waiter whose wake-up was sent.

Start order: the backlog is sorted, so queued runs start by their order whatever order SQS delivered them
in; a run that finds room takes it. A ``strict_order`` workflow's event runs go by ``sequence_id`` also
ahead of delivery: before taking, a run reads its workflow's start-order registry
(:mod:`polos.publish.start_order`, written by the publish) and takes a slot only if its shard keeps room for
its share of the lower ids whose runs have not reached admission, else parks behind them; a hand-on never
wakes such a run (it sends it a delayed wake-up for when they stop holding it back instead).

Failures: the attempt's message is acknowledged only after the release and the hand-on, so a crash
anywhere between the take and the hand-on leaves the message to SQS, whose redelivery (after the
visibility timeout, which is the lease) finds the run finished or waiting and releases and hands on again
(:func:`settle`, idempotent). The wake-up is sent before the waiter is marked handed: a crash between them
sends it twice (a duplicate wake-up finds the run taken, or queued again), never zero times. A woken run
that takes its slot hands on once more when its shard still has room, so several slots freed at once wake
as many waiters.

Capacity: each shard holds at most :data:`SHARD_CAPACITY` holders (one write unit per take or free) and
takes about 400 starts a second (80 % of 1,000 writes/s per item, two per run), so a key of limit L has
``shards(L)`` items: L of them for L <= 2 (a run of 2.5 ms or more cannot start 400 times a second per
slot), at least :data:`MIN_SHARDS` beyond (1,200 starts/s), and one more per 20 slots. So a key never
caps below min(L / run time, 1,000 starts/s); ``polos capacity`` and ``python -m bench --only capacity``
print the ceiling (key class ``slot#``).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos import queues
from polos.aws import observability, settings
from polos.publish import start_order
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from polos.definition import Workflow
    from polos.runtime.records import RunRecord

logger = Logger(service="polos")

SLOT_SK = "slot"
SHARD_CAPACITY = 20
MIN_SHARDS = 3  # a key of limit 3 or more: 3 x 400 starts/s at 80 % of each item's writes, past 1,000/s
HOLDER_PREFIX = "h#"
BACKLOG_PAGE = 10  # waiters read per hand-on or ordering check (one Query, 0.5 read unit per 4 KB)
MAX_TAKE_TRIES = 3  # a shard's conditional take raced by others this often is treated as full
Item = dict[str, Any]


@dataclass(frozen=True)
class SlotSpec:
    """The slot a run needs: ``limit`` runs of ``queue`` per ``key`` at once; ``order`` sorts its backlog."""

    queue: str
    limit: int
    key: str | None
    order: str

    def to_json(self) -> str:
        return json.dumps([self.queue, self.limit, self.key, self.order], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SlotSpec:
        name, limit, key, order = json.loads(text)
        return cls(str(name), int(limit), key, str(order))

    def waiting_for(self) -> dict[str, Any]:
        """As the runs API shows a run queued for it."""
        return {"kind": "concurrency", "queue": self.queue, "key": self.key}


@dataclass(frozen=True)
class Held:
    """A slot taken: the shard and the lease end it was taken with (what :func:`release` frees)."""

    spec: SlotSpec
    shard: int
    lease_until: float

    def to_json(self) -> str:
        return json.dumps([self.spec.to_json(), self.shard, self.lease_until], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Held:
        spec, shard, lease_until = json.loads(text)
        return cls(SlotSpec.from_json(spec), int(shard), float(lease_until))


def shards(limit: int) -> int:
    """How many items hold a key's slots (see the module's capacity note)."""
    return limit if limit <= 2 else max(MIN_SHARDS, math.ceil(limit / SHARD_CAPACITY))


def shard_caps(limit: int, count: int | None = None) -> list[int]:
    """Each of ``count`` shards' share of ``limit`` (default: :func:`shards`): they add up to it exactly."""
    count = shards(limit) if count is None else count
    return [limit // count + (1 if index < limit % count else 0) for index in range(count)]


def spec_for(wf: Workflow, run: RunRecord, payload: Any) -> SlotSpec | None:
    """The slot the run needs, or ``None`` (no limit applies). An invoked run's ``queue_name`` /
    ``queue_concurrency_limit`` / ``concurrency_key`` (stored with it) win over the workflow's options; a
    scheduled workflow without a queue runs one firing at a time."""
    asked: dict[str, Any] = json.loads(run.queue_json) if run.queue_json else {}
    own = getattr(wf, "queue", None)
    name: str | None = asked.get("name") or (own.name if own is not None else None)
    limit: int | None = asked.get("limit")
    if name is not None and limit is None:
        limit = own.concurrency_limit if own is not None and own.name == name else None
        limit = limit if limit is not None else queues.declared_limit(name)
    if name is None and wf.schedule is not None:
        name, limit = wf.id, 1
    if name is None or limit is None:
        return None
    if run.trigger_type == "event" and isinstance(payload, dict):
        key = queues.event_key(getattr(wf, "concurrency_key", None), payload)
        order = start_order.order_of(int(payload.get("sequence_id") or 0))
    else:
        key = asked.get("key")
        order = f"r{run.created_at}#{run.run_id}"
    return SlotSpec(name, limit, key, order)


def _slot_pk(spec: SlotSpec, shard: int) -> str:
    return f"slot#{spec.queue}#{spec.key or ''}#{shard}"


def backlog_pk(queue: str, key: str | None) -> str:
    return f"qwait#{queue}#{key or ''}"


def queue_index(queue: str) -> str:
    """The ``by_workflow`` index partition of a queue's waiters (the queues API lists its backlog); ``~``
    is in no workflow id, so no workflow's partition (``<workflow>#<n>``) is ever this one."""
    return f"~queue#{queue}"


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Slots:
    """Takes, frees and hands on a queue's slots (one instance per process is enough)."""

    def __init__(self) -> None:
        self._client = settings.dynamodb()
        self._table = settings.get_settings().runs_table

    # --- taking ------------------------------------------------------------------------------------

    def take(
        self,
        spec: SlotSpec,
        run_id: str,
        lease_until: float,
        *,
        backlog: list[Item] | None = None,
        earlier: int = 0,
    ) -> Held | None:
        """A slot for ``run_id`` until ``lease_until``, or ``None`` when every shard is full or an earlier
        run waits in the backlog (order is kept: it goes first, also when it was handed its turn and its
        wake-up is on the way: a duplicate delivery of a later run must not take that slot). ``backlog``:
        its first page, when the caller read it already (:meth:`backlog_page`). ``earlier``: runs before
        this one that have not come yet; each shard keeps room for its share of them."""
        now = time.time()
        page = self.backlog_page(spec) if backlog is None else backlog
        if any(item["sk"]["S"] < spec.order and item["run_id"]["S"] != run_id for item in page):
            return None
        count = shards(spec.limit)
        caps = shard_caps(spec.limit)
        start = zlib.crc32(run_id.encode()) % count
        for offset in range(count):
            shard = (start + offset) % count
            room = caps[shard] - math.ceil(earlier * caps[shard] / spec.limit)
            if room > 0 and self._take_shard(spec, shard, room, run_id, lease_until, now):
                return Held(spec, shard, lease_until)
        return None

    def backlog_page(self, spec: SlotSpec) -> list[Item]:
        """The key's backlog's first page (its earliest waiters): whether a run before this one was not
        handed its turn (then this run queues behind it), and whether any waits after it. One Query."""
        answer = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": backlog_pk(spec.queue, spec.key)}},
            ConsistentRead=True,
            Limit=BACKLOG_PAGE,
        )
        return list(answer.get("Items", []))

    def _take_shard(
        self, spec: SlotSpec, shard: int, cap: int, run_id: str, lease_until: float, now: float
    ) -> bool:
        key = {"pk": {"S": _slot_pk(spec, shard)}, "sk": {"S": SLOT_SK}}
        holder = HOLDER_PREFIX + run_id
        names = {"#h": holder}
        values: dict[str, AttributeValueTypeDef] = {
            ":lease": {"N": repr(lease_until)},
            ":one": {"N": "1"},
            ":cap": {"N": str(cap)},
        }
        update = "SET #h = :lease ADD held :one"
        condition = "attribute_not_exists(#h) AND (attribute_not_exists(held) OR held < :cap)"
        for _ in range(MAX_TAKE_TRIES):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return True
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                old: Item = exc.response.get("Item") or {}  # type: ignore[assignment]
            if holder in old:  # this run holds it already (an attempt of it died): the same one slot
                names, values = {"#h": holder}, {":lease": {"N": repr(lease_until)}}
                update, condition = "SET #h = :lease", "attribute_exists(#h)"
                continue
            expired = [
                name
                for name, value in old.items()
                if name.startswith(HOLDER_PREFIX) and float(value["N"]) < now
            ]
            if not expired or int(old.get("held", {"N": "0"})["N"]) - len(expired) >= cap:
                return False
            # Full, but with holders whose attempts' leases passed: evicted by this very take.
            names = {"#h": holder, **{f"#x{i}": name for i, name in enumerate(expired)}}
            values = {
                ":lease": {"N": repr(lease_until)},
                ":delta": {"N": str(1 - len(expired))},
                ":held": {"N": old.get("held", {"N": "0"})["N"]},
                **{f":x{i}": old[name] for i, name in enumerate(expired)},
            }
            removals = ", ".join(f"#x{i}" for i in range(len(expired)))
            update = f"SET #h = :lease REMOVE {removals} ADD held :delta"
            condition = "attribute_not_exists(#h) AND held = :held AND " + " AND ".join(
                f"#x{i} = :x{i}" for i in range(len(expired))
            )
        return False

    # --- queueing ----------------------------------------------------------------------------------

    def wait(self, spec: SlotSpec, run_id: str, workflow_id: str) -> None:
        """Put the run in its key's backlog (again: a woken run that found no room goes back unhanded)."""
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": backlog_pk(spec.queue, spec.key)},
                "sk": {"S": spec.order},
                "run_id": {"S": run_id},
                "workflow_id": {"S": workflow_id},
                "wf": {"S": queue_index(spec.queue)},
                "created_at": {"S": spec.order},
                "key": {"S": spec.key or ""},
                "lim": {"N": str(spec.limit)},
                "expires_at": {"N": str(int(time.time()) + settings.get_settings().retention_seconds)},
            },
        )

    def unwait(self, spec: SlotSpec) -> None:
        """Remove the run's waiter (it took its slot, or ended while queued)."""
        self._client.delete_item(
            TableName=self._table,
            Key={"pk": {"S": backlog_pk(spec.queue, spec.key)}, "sk": {"S": spec.order}},
        )

    # --- freeing -----------------------------------------------------------------------------------

    def free(self, held: Held, run_id: str) -> None:
        """Give the slot back (a no-op when it was freed already, or retaken by a later attempt)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _slot_pk(held.spec, held.shard)}, "sk": {"S": SLOT_SK}},
                UpdateExpression="REMOVE #h ADD held :minus",
                ConditionExpression="#h = :lease",
                ExpressionAttributeNames={"#h": HOLDER_PREFIX + run_id},
                ExpressionAttributeValues={":lease": {"N": repr(held.lease_until)}, ":minus": {"N": "-1"}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def hand_on(self, spec: SlotSpec, *, skip: str | None = None) -> str | None:
        """Wake the backlog's first run not handed its turn (sent first, marked after); its run id. None
        while an earlier one's wake-up is on the way (it hands on in turn when it took its slot)."""
        now = time.time()
        for item in self.backlog_page(spec):
            run_id = str(item["run_id"]["S"])
            if run_id == skip:
                continue
            if not _unhanded(item, now):
                return None
            order = _held_back(spec, item["workflow_id"]["S"], item["sk"]["S"], now)
            if order.lower:  # an earlier event's run has not reached admission yet
                # It goes first, and hands on when admitted; should it never come, this run is woken once
                # it stops holding it back (at most 900 s later, then again if need be).
                wake = WorkflowMessage(
                    item["workflow_id"]["S"], "invoke", run_id=run_id, delay_seconds=order.delay_seconds(now)
                )
                deliver([wake])
                return None
            deliver([WorkflowMessage(item["workflow_id"]["S"], "invoke", run_id=run_id)])
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET handed = :now",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
            except ClientError as exc:  # the woken run took its slot (and removed its waiter) already
                if not _condition_failed(exc):
                    raise
            return run_id
        return None

    def room_left(self, held: Held) -> bool:
        """Whether the shard a woken run took still has a free slot (then it hands on once more)."""
        return self.live_holders(held.spec, held.shard, time.time()) < shard_caps(held.spec.limit)[held.shard]

    def live_holders(self, spec: SlotSpec, shard: int, now: float) -> int:
        """How many runs hold a shard now (those whose lease passed do not). One GetItem."""
        return len(self.shard_holders(spec, shard, now))

    def shard_holders(self, spec: SlotSpec, shard: int, now: float) -> list[str]:
        """The runs holding a shard now. One GetItem."""
        answer = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _slot_pk(spec, shard)}, "sk": {"S": SLOT_SK}},
            ConsistentRead=True,
        )
        item = answer.get("Item", {})
        return [
            name.removeprefix(HOLDER_PREFIX)
            for name, value in item.items()
            if name.startswith(HOLDER_PREFIX) and float(value["N"]) >= now
        ]

    def holders(self, spec: SlotSpec) -> list[str]:
        """The runs holding the key's slots now (one GetItem per shard)."""
        now = time.time()
        return [
            run_id for shard in range(shards(spec.limit)) for run_id in self.shard_holders(spec, shard, now)
        ]


# --- the queues API -----------------------------------------------------------------------------------

VIEW_BACKLOG_PAGE = 100  # waiters listed (the first page of the queue's backlog, all keys)
VIEW_HOLDER_KEYS = 10  # keys whose holders are read (the keyless bucket and the backlog's first keys)


def queue_view(name: str, limit: int | None, key: str | None = None) -> dict[str, Any]:
    """``GET /api/v1/queues/{name}``: the limit, the runs holding slots and the backlog by key (its first
    page; ``key`` narrows both to one key). Bounded: one Query, one BatchGetItem of waiters, and the slot
    shards of at most :data:`VIEW_HOLDER_KEYS` keys."""
    client = settings.dynamodb()
    table = settings.get_settings().runs_table
    if key is not None:
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": backlog_pk(name, key)}},
            "ConsistentRead": True,
        }
    else:
        query = {
            "IndexName": "by_workflow",
            "KeyConditionExpression": "wf = :wf",
            "ExpressionAttributeValues": {":wf": {"S": queue_index(name)}},
        }
    page = client.query(TableName=table, Limit=VIEW_BACKLOG_PAGE, **query)
    entries = page.get("Items", [])
    waiters: list[Item] = []
    if entries:
        wanted = [{"pk": entry["pk"], "sk": entry["sk"]} for entry in entries]
        answer = client.batch_get_item(RequestItems={table: {"Keys": wanted, "ConsistentRead": True}})
        found = answer.get("Responses", {}).get(table, [])
        waiters = sorted(found, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
    if limit is None and waiters:
        limit = int(waiters[0]["lim"]["N"])
    backlog: dict[str | None, list[str]] = {}
    for item in waiters:
        backlog.setdefault(item["key"]["S"] or None, []).append(item["run_id"]["S"])
    keys = [key] if key is not None else [None, *[k for k in backlog if k is not None]]
    holders: list[dict[str, Any]] = []
    if limit is not None:
        now = time.time()
        slots = Slots()
        for held_key in keys[:VIEW_HOLDER_KEYS]:
            spec = SlotSpec(name, limit, held_key, "")
            for shard in range(shards(limit)):
                holders += [
                    {"run_id": run_id, "key": held_key} for run_id in slots.shard_holders(spec, shard, now)
                ]
    return {
        "queue": name,
        "concurrency_limit": limit,
        "holders": holders,
        "backlog": [{"key": k, "run_ids": ids, "count": len(ids)} for k, ids in backlog.items()],
        "backlog_truncated": "LastEvaluatedKey" in page,
    }


def _unhanded(item: Item, now: float) -> bool:
    """A waiter not handed its turn, or handed so long ago (a lease) that its wake-up must be lost."""
    handed = item.get("handed")
    return handed is None or float(handed["N"]) < now - settings.get_settings().lease_seconds


# --- the worker's calls ------------------------------------------------------------------------------


def admit(spec: SlotSpec | None, run: RunRecord, woken: bool) -> Held | bool | None:
    """The one call before an attempt executes: ``True`` when no limit applies, the :class:`Held` slot
    when one was taken, ``None`` when the run must wait (its waiter is stored; the caller parks it
    ``queued``). ``woken``: the run was queued for this spec before.

    An event run whose lower sequence ids (registered by their publish) have not reached admission leaves
    room for them (:mod:`polos.publish.start_order`), or waits: it is handed on when they are admitted, or
    woken by a delayed wake-up once they stop holding it back (:meth:`Slots.hand_on`)."""
    if spec is None:
        return True
    slots = Slots()
    now = time.time()
    order = _held_back(spec, run.workflow_id, spec.order, now)
    backlog = slots.backlog_page(spec)
    held = slots.take(spec, run.run_id, run.lease_until or now, backlog=backlog, earlier=order.lower)
    if held is None:
        slots.wait(spec, run.run_id, run.workflow_id)
        start_order.admitted(order)  # the waiter stands for it now
        observability.count("RunsQueued")
        why = "an earlier event's run goes first" if order.lower else "its queue's limit is reached"
        logger.info(f"run queued: {why}", extra=spec.waiting_for())
        return None
    start_order.admitted(order)
    observability.count("SlotsTaken")
    if woken or any(item["sk"]["S"] == spec.order for item in backlog):  # or it died parking itself
        slots.unwait(spec)
    # Runs wait after it (held back by its sequence id, or several slots freed at once): the next one too.
    if (woken or any(item["sk"]["S"] > spec.order for item in backlog)) and slots.room_left(held):
        slots.hand_on(spec, skip=run.run_id)
    return held


def _held_back(spec: SlotSpec, workflow_id: str, order: str, now: float) -> start_order.Standing:
    """Where a run of ``order`` stands in its workflow's start-order registry (event runs of a
    ``strict_order`` workflow only: others read nothing)."""
    if not order.startswith("e") or not start_order.strict(workflow_id):
        return start_order.Standing(0, None, None)
    return start_order.standing(spec.queue, spec.key, workflow_id, int(order[1:]), now, limit=spec.limit)


def release(held: Held | None, run_id: str) -> None:
    """After an attempt's outcome is stored: the slot back, and the backlog's next run woken."""
    if held is None:
        return
    slots = Slots()
    slots.free(held, run_id)
    observability.count("SlotsFreed")
    slots.hand_on(held.spec, skip=run_id)


def settle(run: RunRecord) -> None:
    """A delivery of a run that ended (or waits) already: what its end owed the queue, again (a crash may
    have cut it short; each part is idempotent): its slot freed, its waiter gone, the next run woken."""
    if not run.slot_json:
        return
    held = Held.from_json(run.slot_json)
    slots = Slots()
    slots.unwait(held.spec)
    if held.shard >= 0:  # ``-1``: the run was queued, holding none
        slots.free(held, run.run_id)
        slots.hand_on(held.spec, skip=run.run_id)


def recheck(spec: SlotSpec) -> None:
    """After a run was parked for a slot: if a slot is free now (freed between the take and the parking,
    its hand-on finding no waiter yet), the backlog's next run is woken. Reads only."""
    slots = Slots()
    now = time.time()
    caps = shard_caps(spec.limit)
    for shard in range(shards(spec.limit)):
        if slots.live_holders(spec, shard, now) < caps[shard]:
            slots.hand_on(spec)
            return


def encode(held: Held | SlotSpec | None) -> str | None:
    """What the run item keeps of its slot (``slot``), so a later delivery can :func:`settle` it."""
    if held is None:
        return None
    if isinstance(held, SlotSpec):
        return Held(held, -1, 0.0).to_json()
    return held.to_json()

"""Capacity: the units each partition key takes per event, run or request, and the rate at which it reaches
AWS's per-partition limits (1,000 write units and 3,000 read units a second, of a table or of a global
secondary index: an index partition that throttles fails the base table's write).

Keys fall in classes (:func:`key_class`: the topic's sequence counter, the topic's event partition, the
workflow's index partition, the API key's item, ...); in each class the busiest key's units per unit of
load give the ceiling the class puts on its topic, workflow or key. ``python -m bench --only capacity``
measures it on fixed workloads; ``polos capacity`` on what ``polos dev`` ran.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from polos.api.keys import REPLICAS
from polos.publish.events import BLOCK_EVENTS
from polos.runtime.journal import INDEX_SHARDS
from polos.runtime.slots import MIN_SHARDS

from infra.metering.meter import Call, PartitionUse

WRITE_LIMIT = 1_000  # write units a second on one partition key (table or index)
READ_LIMIT = 3_000  # read units a second on one partition key
HEADROOM = 0.8  # the share of a limit a key may run at
TARGET_PER_SECOND = 8_000  # issue 22: events/s per topic, new runs/s per workflow, requests/s per key


@dataclass(frozen=True)
class KeyClass:
    """A kind of partition key, what it is shared by (``scope``) and the target rate of that scope."""

    name: str
    scope: str  # what shares one key of the class: "topic", "workflow", "API key", "one run", ...
    target: float | None  # per second of the workload's unit, or None (no target: reported only)
    shared: bool = True  # False: each run or request has its own key, so no rate of them reaches its limit
    # Keys that rotate: one key takes at most ``span`` units of load, then the next key takes over (a
    # topic's event blocks), so a key's busiest second holds at most that many, whatever the rate.
    span: int | None = None
    # Keys a scope's load is spread over evenly, by hash or at random (a workflow's index partitions, an API
    # key's copies): a key takes 1/``spread`` of it. Measured as that mean share: at the rates the targets
    # name, thousands a second, a key's share strays from it by a few percent only (at 8,000 new runs a
    # second over 16 partitions: 500 +- 22 a partition).
    spread: int | None = None
    # Keys that are one scope's shards (``<key>``, ``<key>#1``, ...: a flow-control key's window), its load
    # spread over them by run id: measured as the mean share over the shards the workload touched.
    sharded: bool = False


TOPIC_COUNTER = KeyClass("topic counter (seq#)", "topic", TARGET_PER_SECOND)
TOPIC_EVENTS = KeyClass("topic events (topic#)", "topic", TARGET_PER_SECOND, span=BLOCK_EVENTS)
# One claim per key (``id#<topic>#<id>``): a key takes one event's claim, once.
TOPIC_CLIENT_IDS = KeyClass("topic client ids (id#)", "topic", TARGET_PER_SECOND, span=1)
WAITERS = KeyClass("topic waiters (wait#)", "topic", TARGET_PER_SECOND)
WORKFLOW_INDEX = KeyClass("workflow index (by_workflow)", "workflow", TARGET_PER_SECOND, spread=INDEX_SHARDS)
API_KEY = KeyClass("API key item", "API key", TARGET_PER_SECOND, spread=REPLICAS)
TIMER_SHARD = KeyClass("timer shard (timer#)", "all timers", None)
# Per workflow, option and key value (``flow#``): a throttle's or rate limit's window is sharded past one
# item's writes (polos.runtime.event_flow.shards), a debounce burst is one item.
FLOW_KEY = KeyClass("flow-control key (flow#)", "flow-control key", None, sharded=True)
# A queue key's slots: ``slot#<queue>#<key>#<n>``, at least MIN_SHARDS items for a limit of 3 or more (runs
# spread over them by run id); the target is 1,000 starts/s (a key caps at min(limit / run time, that)).
QUEUE_SLOTS = KeyClass("queue key slots (slot#)", "queue key", 1_000, spread=MIN_SHARDS)
QUEUE_BACKLOG = KeyClass("queue key backlog (qwait#)", "queue key", None)
# A queue key's start-order registry per workflow: ``qorder#<queue>#<key>#<workflow>[#<n>]``, min(limit, 3)
# partitions (polos.publish.start_order.partitions); the target is the slots' 1,000 ordered starts/s.
QUEUE_ORDER = KeyClass("queue key start order (qorder#)", "queue key", 1_000, sharded=True)
RUN = KeyClass("run partition (run#)", "one run", None, shared=False)
IDEMPOTENCY = KeyClass("Idempotency-Key record", "one request", None, shared=False)
OTHER = KeyClass("other", "-", None)
CLASSES = {
    cls.name: cls
    for cls in (
        TOPIC_COUNTER,
        TOPIC_EVENTS,
        TOPIC_CLIENT_IDS,
        WAITERS,
        WORKFLOW_INDEX,
        API_KEY,
        TIMER_SHARD,
        FLOW_KEY,
        QUEUE_SLOTS,
        QUEUE_BACKLOG,
        QUEUE_ORDER,
        RUN,
        IDEMPOTENCY,
        OTHER,
    )
}


def key_class(use: PartitionUse) -> KeyClass:
    """The class of the partition key ``use`` touched (tables are named ``<prefix>-EventsTable``, ...)."""
    if use.index == "by_workflow":
        return WORKFLOW_INDEX
    table = use.table.rsplit("-", 1)[-1].removesuffix("Table").lower()
    if table == "apikeys":
        return API_KEY
    if table == "idempotency":
        return IDEMPOTENCY
    prefix = use.key.split("#", 1)[0]
    by_prefix = {
        "seq": TOPIC_COUNTER,
        "topic": TOPIC_EVENTS,
        "id": TOPIC_CLIENT_IDS,
        "wait": WAITERS,
        "timer": TIMER_SHARD,
        "flow": FLOW_KEY,
        "slot": QUEUE_SLOTS,
        "qwait": QUEUE_BACKLOG,
        "qorder": QUEUE_ORDER,
        "run": RUN,
    }
    return by_prefix.get(prefix, OTHER)


@dataclass(frozen=True)
class KeyLoad:
    """The busiest key of one class in one workload, and the ceiling it implies."""

    workload: str
    key_class: KeyClass
    key: str
    unit: str  # what one unit of load is: "event", "run", "request", "wait"
    read_units: float  # on that key, per unit of load
    write_units: float
    target: float | None = None  # its own target, else its class's (flow: min(limit / period, 1,000))

    @property
    def ceiling(self) -> float:
        """Units of load a second at which the key reaches ``HEADROOM`` of its read or write limit (none when
        the key rotates before it could)."""
        span = self.key_class.span
        if span is not None and all(
            span * units <= HEADROOM * limit
            for limit, units in ((READ_LIMIT, self.read_units), (WRITE_LIMIT, self.write_units))
        ):
            return math.inf
        rates = [
            HEADROOM * limit / units
            for limit, units in ((READ_LIMIT, self.read_units), (WRITE_LIMIT, self.write_units))
            if units > 0
        ]
        return min(rates, default=math.inf)

    @property
    def goal(self) -> float | None:
        """The rate the key must reach: its own target, else its class's."""
        return self.target if self.target is not None else self.key_class.target

    @property
    def verdict(self) -> str:
        target = self.goal
        if target is None:
            return "-"
        return "PASS" if self.ceiling >= target else "FAIL"


def key_loads(workload: str, calls: Iterable[Call], loads: dict[KeyClass, tuple[str, int]]) -> list[KeyLoad]:
    """Per key class, the busiest key of ``calls`` and its units per unit of load. ``loads`` names each
    class's unit and how many of them the workload made (classes it does not name count per the unit of
    ``loads[TOPIC_EVENTS]``, or of the first entry; a class of unshared keys counts per run or request)."""
    default = loads.get(TOPIC_EVENTS) or next(iter(loads.values()))
    totals: dict[tuple[KeyClass, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    shards: dict[tuple[KeyClass, str], set[str]] = defaultdict(set)
    for call in calls:
        for use in call.partitions:
            cls = key_class(use)
            key = _spread_scope(use.key) if cls.spread or cls.sharded else use.key  # a scope's keys as one
            shards[(cls, f"{use.index or 'table'}:{key}")].add(use.key)
            units = totals[(cls, f"{use.index or 'table'}:{key}")]
            units[0] += use.read_units
            units[1] += use.write_units
            units[2] += use.write_units > 0
    busiest: dict[KeyClass, KeyLoad] = {}
    for (cls, key), (reads, writes, written) in totals.items():
        unit, count = loads.get(cls, default)
        if not cls.shared:  # a key of its own per run or request: per that one run or request
            unit, count = cls.scope.removeprefix("one "), 1
        elif cls.span is not None:  # a rotating key: per unit of load it took itself (its item writes)
            count = max(1, int(written))
        elif cls.spread:  # one of the scope's keys: the mean share
            count, key = count * cls.spread, f"{key} (1 of {cls.spread} keys)"
        elif cls.sharded:  # one of the scope's shards: the mean share over those touched
            seen = len(shards[(cls, key)])
            count, key = count * seen, f"{key} (1 of {seen} shards)"
        load = KeyLoad(workload, cls, key, unit, reads / count, writes / count)
        if cls not in busiest or load.ceiling < busiest[cls].ceiling:
            busiest[cls] = load
    return sorted(busiest.values(), key=lambda load: load.ceiling)


def _spread_scope(key: str) -> str:
    """The scope of a key of a spread or sharded class: ``<workflow>#<n>``, ``<key id>#<n>`` and
    ``slot#<queue>#<key>#<n>`` without the ``#<n>``; ``flow#<workflow>#<kind>#<hash>[#<n>]`` and
    ``qorder#<queue>#<key>#<workflow>[#<n>]`` without it."""
    if key.startswith(("flow#", "qorder#")):
        return "#".join(key.split("#")[:4])
    return key.rsplit("#", 1)[0] if key.startswith("slot#") else key.split("#")[0]


def rate(load: KeyLoad) -> str:
    """The ceiling as text: a rate, or why there is none (a key no other run or request shares)."""
    if not load.key_class.shared:
        return f"not shared ({load.key_class.scope})"
    return "unbounded" if math.isinf(load.ceiling) else f"{load.ceiling:,.0f} {load.unit}s/s"


@dataclass
class KeyTotals:
    """What one partition key took so far: units and requests."""

    read_units: float = 0.0
    write_units: float = 0.0
    reads: int = 0
    writes: int = 0


def _topic(key: str) -> str:
    """The topic of a topic-scoped key (``seq#<topic>``, ``topic#<topic>#<block>``, ...: topics hold no
    ``#``)."""
    return key.split("#")[1]


class Ledger:
    """Every shared partition key's totals over a session (``polos dev``): folded from the meter's calls,
    written to a file, read back by ``polos capacity``. Keys no two runs or requests share are left out."""

    def __init__(self, keys: dict[tuple[str, str], KeyTotals] | None = None) -> None:
        self.keys: dict[tuple[str, str], KeyTotals] = keys or {}

    def add(self, calls: Iterable[Call]) -> None:
        for call in calls:
            for use in call.partitions:
                cls = key_class(use)
                if not cls.shared or cls is OTHER:
                    continue
                totals = self.keys.setdefault((cls.name, use.key), KeyTotals())
                totals.read_units += use.read_units
                totals.write_units += use.write_units
                totals.reads += use.read_units > 0
                totals.writes += use.write_units > 0

    def to_json(self) -> str:
        return json.dumps([[name, key, asdict(totals)] for (name, key), totals in self.keys.items()])

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        rows: list[list[Any]] = json.loads(text)
        return cls({(str(name), str(key)): KeyTotals(**totals) for name, key, totals in rows})

    def loads(self) -> list[KeyLoad]:
        """Each shared key's units per unit of its scope's load: per event published to its topic (events =
        item writes to the topic's event blocks; a block per event it took itself), per run of its workflow
        (its index entries), per request with its API key (reads of the key's items), per wait armed (timer
        items, all shards)."""
        events: dict[str, int] = defaultdict(int)
        for (name, key), totals in self.keys.items():
            if name == TOPIC_EVENTS.name:
                events[_topic(key)] += totals.writes
        timers = sum(t.writes for (name, _), t in self.keys.items() if name == TIMER_SHARD.name)
        # A key's checks are spread over its copies (``<key id>#<n>``), a workflow's new runs over its index
        # partitions (``<workflow>#<n>``): their totals per key id or workflow, per request or run of it.
        spread: dict[tuple[str, str], KeyTotals] = defaultdict(KeyTotals)
        shards: dict[tuple[str, str], int] = defaultdict(int)
        found = []
        for (name, key), totals in self.keys.items():
            cls = CLASSES[name]
            if cls.spread or cls.sharded:
                shards[(name, _spread_scope(key))] += 1
                whole = spread[(name, _spread_scope(key))]
                whole.read_units += totals.read_units
                whole.write_units += totals.write_units
                whole.reads += totals.reads
                whole.writes += totals.writes
                continue
            if cls is QUEUE_BACKLOG:
                continue  # written only while a limit binds (a queued run's put and delete): bench reports it
            if cls.scope == "topic":
                topic = _topic(key)
                count = totals.writes if cls.span is not None else events.get(topic, 0)
                scope, unit = f"topic {topic}", "event"
            else:
                scope, unit, count = "timers", "wait", timers
            if count:
                found.append(
                    KeyLoad(scope, cls, key, unit, totals.read_units / count, totals.write_units / count)
                )
        for (name, scope_id), whole in spread.items():
            cls = CLASSES[name]
            scope, unit, count = (
                (f"workflow {scope_id}", "run", whole.writes)
                if cls is WORKFLOW_INDEX
                else (f"{scope_id}", "run", whole.writes // 2)  # a run's take and free
                if cls is QUEUE_SLOTS
                else (f"{scope_id}", "start", whole.writes)  # a start, booking or grant: one write
                if cls is FLOW_KEY
                else (f"{scope_id}", "run", whole.reads // shards[(name, scope_id)])  # a run reads each one
                if cls is QUEUE_ORDER
                else (f"API key {scope_id}", "request", whole.reads)
            )
            if count:
                keys = cls.spread or shards[(name, scope_id)]
                share = count * keys
                key = f"{scope_id} (1 of {keys} {'keys' if cls.spread else 'shards'})"
                found.append(
                    KeyLoad(scope, cls, key, unit, whole.read_units / share, whole.write_units / share)
                )
        return sorted(found, key=lambda load: (load.workload, load.ceiling))


def text_table(loads: Iterable[KeyLoad]) -> list[str]:
    """Plain-text rows: scope, key class, units per unit of load, the ceiling and the verdict."""
    rows = [
        f"{'scope':<40} {'key class':<30} {'RCU/unit':>9} {'WCU/unit':>9} {'ceiling':>20}  target",
    ]
    for load in loads:
        target = "" if load.goal is None else f"{load.goal:,.0f}/s "
        rows.append(
            f"{load.workload:<40} {load.key_class.name:<30} {load.read_units:>9.3f} {load.write_units:>9.3f} "
            f"{rate(load):>20}  {target}{load.verdict}"
        )
    return rows

"""Start order of a ``strict_order`` workflow's event runs when SQS delivers their events out of order.

A run over its queue's limit starts by ``sequence_id`` (DESIGN §1c): the backlog sorts the queued runs so,
whatever order their events came in. It cannot order a run ahead of delivery: when event 5 is delivered
before event 3 and a slot is free, 5 starts, since only the publish knows that 3 exists. A workflow that
asks for that order (``@workflow(strict_order=True)``: single-event, on a queue with a limit, without
debounce, throttle or rate limit, which order their events themselves) has its events registered by the
publish before it sends them (other workflows register nothing and read nothing: a slot costs them its take
and its free): per request, workflow and concurrency key ONE
item of the runs table, pk ``qorder#<queue>#<key>#<workflow>``, sk ``e<lowest sequence id>`` (the backlog's
order), with ``pending``, the number set of its sequence ids whose runs have not reached admission, and
``at``, when it was written.

Partitions: a key's registry is :func:`partitions` partition keys (``<pk>``, ``<pk>#1``, ``<pk>#2``), one
per slot up to :data:`MAX_PARTITIONS`, each item in the one its sort key hashes to; a run reads them all.
With about two writes per run at one event per request (the publish's item and the admission), one
partition takes 400 ordered starts a second at 80 % of DynamoDB's 1,000 writes/s per partition key: as
many as one slot can start (a run takes at least ~2.5 ms, :mod:`polos.runtime.slots`), so a key of limit
L starts min(L / run time, 1,000) runs a second with min(L, 3) partitions. Partition 0 is the key without
a suffix (what a registry of one partition always was). A redeploy that lowers the limit leaves the items
of the partitions it drops unread: those in-flight events are not ordered, and hold nothing back.

A run reaches admission when it takes a slot or parks in its key's backlog (:mod:`polos.runtime.slots`);
then its sequence id leaves ``pending`` (the item goes when ``pending`` empties). So what proves that the
run of sequence id ``t`` reached admission is ``t``'s absence from ``pending``. Before taking a slot, the run
of ``s`` reads the first page of the registry before ``s`` (one Query, :data:`REGISTRY_PAGE` items) and
takes a slot only if its shard keeps room for its share of the ``pending`` ids below ``s`` (all of them on
a queue of limit 1 or 2; on a large queue whose limit does not bind, runs delivered side by side start
side by side); else it parks ``queued`` (costing nothing) and is handed on in order once they are admitted.

Bound: an event whose run never reaches admission (its publish died between registering and sending, its
message dead-lettered before a run was taken) holds no one back longer than :func:`wait_bound` after it was
registered: a lease times the queue's ``maxReceiveCount`` (each receive that dies before admission hides the
message at least a lease, and after that many SQS dead-letters it), 5 h by default. So order survives
crashes and redeliveries; a lost event stalls its key's later runs that long. The hand-on that finds its
next run held back sends that run a delayed wake-up (SQS ``DelaySeconds``, at most 900 s, again if need
be); the first reader that finds an item past its bound deletes it.

Cost: the publish's item is one write unit per request, workflow and key (a PutItem each); an
admission removes its id (one UpdateItem; the item's last id, one DeleteItem; after several ids, both) and
reads one Query per partition (one read unit each, strongly consistent). ``python -m bench --only slots``:
1.2 write units per event at 10 events a request with one key, 2 with a key per event.
``python -m bench --only capacity`` prints a key's ordered-start ceiling (key class ``qorder#``).

The manifest says which workflows are strict, to the publish and to the worker alike. A redeploy that turns
``strict_order`` off leaves its registered in-flight events unread (they hold nothing back); one that turns it
on orders from the events published after it. Turned off and on again within the bound, the events
registered before and admitted while it was off hold their key's runs back until their bound.

Only a fresh publish registers: a retry (``Idempotency-Key``) may find runs of its events admitted already,
which must not be made pending again; a publish whose sending fails unregisters what it registered.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from polos import queues
from polos.aws import settings
from polos.aws.attempts import receive_limit
from polos.aws.attribution import concurrently
from polos.payloads import EventItem
from polos.publish import manifest

REGISTRY_PAGE = 25  # registry items read per partition before a run's sequence id (~100 bytes + ~10 per id)
MAX_PARTITIONS = 3  # 3 x 400 ordered starts/s at 80 % of a partition's writes: past 1,000/s
MAX_DELAY_SECONDS = 900  # SQS's maximum DelaySeconds
PARALLEL_WRITES = 16  # a publish's registry items written at once (one per workflow and key)
Item = dict[str, Any]


def registry_pk(queue: str, key: str | None, workflow_id: str, partition: int = 0) -> str:
    """One partition of a key's registry (partition 0 has no suffix)."""
    base = f"qorder#{queue}#{key or ''}#{workflow_id}"
    return f"{base}#{partition}" if partition else base


def partitions(limit: int) -> int:
    """How many partition keys hold the registry of a key of a queue of ``limit`` (module note)."""
    return max(1, min(limit, MAX_PARTITIONS))


def _partition_of(order: str, count: int) -> int:
    """The partition of the registry item of sort key ``order``."""
    return zlib.crc32(order.encode()) % count


def order_of(sequence_id: int) -> str:
    """An event run's place in its backlog and registry (the same as :mod:`polos.runtime.slots` sorts)."""
    return f"e{sequence_id:020d}"


def wait_bound() -> float:
    """How long after its registration an event whose run has not reached admission holds others back."""
    config = settings.get_settings()
    return float(config.lease_seconds * receive_limit(config.max_attempts))


def registers(entry: manifest.WorkflowEntry) -> bool:
    """Whether the publish registers this workflow's events: ``strict_order=True`` as the manifest says
    (``@workflow`` allows it only on a single-event workflow on a queue with a limit, without an event flow
    option), with the limit its registry's partitions follow."""
    return bool(entry.options.get("strict_order")) and entry.concurrency_limit is not None


def strict(workflow_id: str) -> bool:
    """Whether the runs of ``workflow_id`` read its registry before taking a slot (the deployed manifest's
    word, like the publish's)."""
    entry = manifest.current().workflows.get(workflow_id)
    return entry is not None and registers(entry)


def _event_key(path: str | None, event: EventItem) -> str | None:
    """The concurrency key of ``event`` as the worker computes it from its payload."""
    if path is None:
        return None
    return queues.event_key(path, {**event.model_dump(mode="json", exclude={"data"}), "data": event.data})


# --- the publish's side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """The registry items one publish wrote (what it removes when sending fails)."""

    keys: list[Item]


def register(topic: str, events: Iterable[EventItem]) -> Registered:
    """Register ``events`` (new ones, before they are sent) for each ordering workflow subscribed to
    ``topic``: one item per workflow and key (PutItem, :data:`PARALLEL_WRITES` at once: the functions'
    grants stay as they are, so the API role's size, which caps the workflows of a stack, does not grow)."""
    events = list(events)
    entries = [
        entry for entry in manifest.current().workflows.values() if entry.topic == topic and registers(entry)
    ]
    if not entries or not events:
        return Registered([])
    groups: dict[tuple[str, str | None, str, int], list[int]] = {}
    for entry in entries:
        path = entry.options.get("concurrency_key")
        count = partitions(entry.concurrency_limit or 1)
        for event in events:
            group = (str(entry.queue), _event_key(path, event), entry.id, count)
            groups.setdefault(group, []).append(event.sequence_id)
    now = time.time()
    expires = str(int(now + 2 * wait_bound() + 86_400))
    items: list[Item] = []
    for (queue, key, workflow_id, count), ids in groups.items():
        order = order_of(min(ids))
        items.append(
            {
                "pk": {"S": registry_pk(queue, key, workflow_id, _partition_of(order, count))},
                "sk": {"S": order},
                "pending": {"NS": [str(i) for i in sorted(set(ids))]},
                "at": {"N": repr(now)},
                "expires_at": {"N": expires},
            }
        )
    client, table = settings.dynamodb(), settings.get_settings().runs_table
    _each(items, lambda item: client.put_item(TableName=table, Item=item))
    return Registered([{"pk": item["pk"], "sk": item["sk"]} for item in items])


def unregister(registered: Registered) -> None:
    """Remove what :func:`register` wrote (its events were not all sent: none may hold others back)."""
    client, table = settings.dynamodb(), settings.get_settings().runs_table
    _each(registered.keys, lambda key: client.delete_item(TableName=table, Key=key))


def _each(items: list[Item], write: Callable[[Item], object]) -> None:
    """``write`` each item, several at once; the first error is raised once all were tried."""
    concurrently(write, items, PARALLEL_WRITES)


# --- the worker's side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where the run of ``sequence_id`` stands: ``lower`` registered ids below it have not reached
    admission (the slots it must leave them), until ``blocked_until`` at the latest (``None``: none);
    ``own`` is the registry item holding its own id (``None``: none)."""

    sequence_id: int
    blocked_until: float | None
    own: Item | None
    lower: int = 0

    def delay_seconds(self, now: float) -> int:
        """The SQS delay of the wake-up a hand-on sends a run held back (sent again while it still is)."""
        waited = (self.blocked_until or now) - now
        return max(1, min(MAX_DELAY_SECONDS, math.ceil(waited) + 1))


def standing(
    queue: str, key: str | None, workflow_id: str, sequence_id: int, now: float, *, limit: int
) -> Standing:
    """Read the registry before ``sequence_id``: one Query per partition (:func:`partitions` of ``limit``,
    side by side), one more in a partition whose page is full without its own item; items past their bound,
    or with nothing pending, are deleted on the way."""
    order = order_of(sequence_id)
    pks = [registry_pk(queue, key, workflow_id, n) for n in range(partitions(limit))]
    pages = concurrently(lambda pk: _before(pk, order, sequence_id), pks, len(pks))
    items = [item for page in pages for item in page]
    client, table = settings.dynamodb(), settings.get_settings().runs_table
    bound = wait_bound()
    blocked_until: float | None = None
    own: Item | None = None
    lower = 0
    for item in items:
        pending = _pending(item)
        until = float(item["at"]["N"]) + bound
        if not pending or until <= now:
            client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
            continue
        if sequence_id in pending:
            own = item
        below = sum(1 for pending_id in pending if pending_id < sequence_id)
        if below:
            lower += below
            blocked_until = max(blocked_until or until, until)
    return Standing(sequence_id, blocked_until, own, lower)


def _before(pk: str, order: str, sequence_id: int) -> list[Item]:
    """One partition's first page of items up to ``order`` (its earliest), and the run's own item when the
    page is full without it (its last item up to ``order``)."""
    client, table = settings.dynamodb(), settings.get_settings().runs_table
    before_own: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk <= :order",
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":order": {"S": order}},
        "ConsistentRead": True,
    }
    page = client.query(**before_own, Limit=REGISTRY_PAGE)
    items: list[Item] = list(page.get("Items", []))
    if "LastEvaluatedKey" in page and not any(sequence_id in _pending(item) for item in items):
        last = client.query(**before_own, ScanIndexForward=False, Limit=1).get("Items", [])
        items += [item for item in last if sequence_id in _pending(item)]
    return items


def admitted(found: Standing) -> None:
    """The run reached admission (took a slot or parked in the backlog): its id leaves ``pending``; the
    item goes with the last one. One write (two for the last of a several-event item)."""
    if found.own is None:
        return
    client, table = settings.dynamodb(), settings.get_settings().runs_table
    key = {"pk": found.own["pk"], "sk": found.own["sk"]}
    if _pending(found.own) == {found.sequence_id}:  # nothing is ever added: the item is done with
        client.delete_item(TableName=table, Key=key)
        return
    try:
        answer = client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="DELETE pending :id",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":id": {"NS": [str(found.sequence_id)]}},
            ReturnValues="UPDATED_NEW",
        )
    except ClientError as exc:  # its other ids were admitted and the item deleted already
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return
    if "pending" not in answer.get("Attributes", {}):
        # The set emptied (DynamoDB removes it), or this is botocore's resend of an applied request (its
        # answer lost), which changed nothing: only an item with nothing pending goes.
        try:
            client.delete_item(TableName=table, Key=key, ConditionExpression="attribute_not_exists(pending)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def _pending(item: Mapping[str, Any]) -> set[int]:
    return {int(value) for value in item.get("pending", {}).get("NS", [])}

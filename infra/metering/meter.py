"""Count every AWS request a piece of code makes, with its billed units, through botocore event hooks.

``Meter.attach(client)`` registers ``before-call.*.*`` / ``after-call.*.*`` handlers on a client's event
system (``settings.dynamodb()``, ``settings.sqs()`` or any other client). Each finished request becomes a
:class:`Call` with its billed SQS requests (64 KB chunks) and DynamoDB read/write units. DynamoDB units
need item sizes before and after a write; the meter reads them through an un-metered *shadow* client
(give none, e.g. against a shared server, and units stay 0). Global secondary index writes are counted by
DynamoDB's rules (:func:`index_writes`), for the table's real projection and, to price the keys-only lever,
as if the index projected keys only. The same hook injects crashes: after the N-th request took effect,
:class:`Crash` is raised before its caller sees the answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polos.aws import attribution
from polos.aws.item_size import item_size

from infra.metering import prices
from infra.metering.units import read_units, write_units

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Json = dict[str, Any]
_STATE = "polos_bench"  # key of this meter's state in botocore's per-request context
# A context variable, not a thread-local: asyncio.to_thread (how the runtime calls AWS) copies the context.
_TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_tag", default=None)


def current_tag() -> str | None:
    """The tag of the invocation running in this context (``None`` outside any)."""
    return _TAG.get()


class Crash(BaseException):
    """An injected crash: the process stops right after an AWS request took effect (a BaseException, so
    no ``except Exception`` in the code under test can swallow it)."""


@dataclass
class Call:
    """One AWS request as billed."""

    service: str
    operation: str
    params: Json
    ok: bool
    error_code: str | None
    started: float  # time.perf_counter() when the request left (before the meter read item sizes)
    seconds: float  # until its answer was parsed and the meter's own reads were done
    tag: str | None
    thread: int
    run: attribution.RunRef | None = None  # the run the request was made for (polos.aws.attribution)
    billed_requests: int = 1
    read_units: float = 0.0
    write_units: float = 0.0
    # A ReceiveMessage that found nothing: an idle poll (billed per queue and month, not per event).
    empty: bool = False
    # Write units of global secondary indexes (included in ``write_units``), and what they would be if
    # every index projected keys only.
    index_write_units: float = 0.0
    index_write_units_keys_only: float = 0.0
    items: list[ItemWrite] = field(default_factory=list)
    # The units each partition key (of the table or of one of its indexes) took: what AWS's per-partition
    # limits (1,000 WCU/s, 3,000 RCU/s) are counted against (``bench.capacity``).
    partitions: list[PartitionUse] = field(default_factory=list)


@dataclass(frozen=True)
class ItemWrite:
    """One item a write request wrote: its kind (``runs:run#/step#``), partition key, size after, table
    units."""

    kind: str
    key: str
    size: int
    units: int


@dataclass(frozen=True)
class PartitionUse:
    """Units one request took on one partition key: of ``table`` itself, or of its index ``index``."""

    table: str
    index: str | None
    key: str
    read_units: float = 0.0
    write_units: float = 0.0


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and projection (``ALL``, ``KEYS_ONLY``, ``INCLUDE``)."""

    name: str
    keys: tuple[str, ...]
    projection: str
    included: tuple[str, ...] = ()


def _projected(item: Json, index: Index, table_keys: list[str], projection: str) -> Json:
    if projection == "ALL":
        return item
    names = {*table_keys, *index.keys, *(index.included if projection == "INCLUDE" else ())}
    return {name: value for name, value in item.items() if name in names}


def index_writes(
    old: Json | None, new: Json | None, index: Index, table_keys: list[str], projection: str | None = None
) -> list[int]:
    """Sizes of the index writes one item write causes, by DynamoDB's rules (developer guide, "Provisioned
    throughput considerations for global secondary indexes"): an item enters or leaves the index (1
    write), changes an index key value (a delete and a put: 2 writes), or changes an attribute the index
    projects (1 write); an item without all the index's key attributes is not in it (sparse index)."""
    projection = projection or index.projection
    was = old if old is not None and all(name in old for name in index.keys) else None
    now = new if new is not None and all(name in new for name in index.keys) else None
    if now is None:
        return [] if was is None else [item_size(_projected(was, index, table_keys, projection))]
    size = item_size(_projected(now, index, table_keys, projection))
    if was is None:
        return [size]
    old, new = was, now
    if any(old[name] != new[name] for name in index.keys):
        return [item_size(_projected(old, index, table_keys, projection)), size]
    if _projected(old, index, table_keys, projection) != _projected(new, index, table_keys, projection):
        return [size]
    return []


def table_layout(client: DynamoDBClient, table: str) -> tuple[list[str], list[Index]]:
    """A table's key attribute names and its global secondary indexes."""
    answer: Any = client.describe_table(TableName=table)["Table"]
    indexes = [
        Index(
            name=index["IndexName"],
            keys=tuple(part["AttributeName"] for part in index["KeySchema"]),
            projection=index.get("Projection", {}).get("ProjectionType", "ALL"),
            included=tuple(index.get("Projection", {}).get("NonKeyAttributes", ())),
        )
        for index in answer.get("GlobalSecondaryIndexes", [])
    ]
    return [part["AttributeName"] for part in answer["KeySchema"]], indexes


def index_item_size(item: Json, index: Index, table_keys: list[str], projection: str | None = None) -> int:
    """Bytes of an item's copy in ``index`` (0 when it lacks an index key: not in a sparse index)."""
    if not all(name in item for name in index.keys):
        return 0
    return item_size(_projected(item, index, table_keys, projection or index.projection))


def item_kind(table: str, key: Json) -> str:
    """``runs:run#/step#``: the table's last name part (``b1c2-RunsTable``: ``runs``) and each key's prefix
    (numbers and ids as ``*``)."""

    def prefix(value: Json) -> str:
        text = str(next(iter(value.values())))
        if "#" in text:
            return text.split("#", 1)[0] + "#"
        return "*" if any(ch.isdigit() for ch in text) or len(text) > 16 else text

    name = table.rsplit("-", 1)[-1].removesuffix("Table").lower()
    return name + ":" + "/".join(prefix(value) for value in key.values())


def _attribute_value(value: Json) -> str:
    """A key attribute's value as text (``{"S": "topic#a"}``: ``topic#a``)."""
    return str(next(iter(value.values())))


def queried_partition(api: Json, hash_key: str) -> str | None:
    """The partition key value a Query's ``KeyConditionExpression`` names for ``hash_key`` (``None``: the
    expression names none, e.g. a Scan)."""
    names: dict[str, str] = api.get("ExpressionAttributeNames", {})
    values: dict[str, Json] = api.get("ExpressionAttributeValues", {})
    expression = str(api.get("KeyConditionExpression", ""))
    for name, placeholder in re.findall(r"(#?[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)", expression):
        if names.get(name, name) == hash_key and placeholder in values:
            return _attribute_value(values[placeholder])
    return None


@dataclass
class _Pending:
    started: float
    service: str
    operation: str
    params: Json
    before: dict[str, Json | None] = field(default_factory=dict)


class Meter:
    """Records :class:`Call` s of every attached client; thread-safe."""

    def __init__(self, shadow: DynamoDBClient | None = None) -> None:
        self._shadow = shadow
        self._keys: dict[str, list[str]] = {}
        self._indexes: dict[str, list[Index]] = {}
        self._lock = threading.Lock()
        self._attached: list[Any] = []
        self.calls: list[Call] = []
        self._by_tag: dict[str | None, list[Call]] = {}
        self._crash_at: int | None = None
        self._crash_where: Callable[[Call], bool] = lambda call: True
        self._seen = 0

    # -- wiring -------------------------------------------------------------------------------------
    def attach(self, *clients: Any) -> None:
        """Meter ``clients`` (idempotent per client)."""
        for client in clients:
            if any(client is other for other in self._attached):
                continue
            events = client.meta.events
            events.register("before-call.*.*", self._before, unique_id=f"bench-before-{id(self)}")
            events.register("after-call.*.*", self._after, unique_id=f"bench-after-{id(self)}")
            self._attached.append(client)

    def detach(self) -> None:
        for client in self._attached:
            client.meta.events.unregister("before-call.*.*", unique_id=f"bench-before-{id(self)}")
            client.meta.events.unregister("after-call.*.*", unique_id=f"bench-after-{id(self)}")
        self._attached.clear()

    @contextlib.contextmanager
    def tag(self, label: str) -> Iterator[None]:
        """Label the calls made inside the block, in threads it starts too (e.g. ``ApiFunction:3``)."""
        token = _TAG.set(label)
        try:
            yield
        finally:
            _TAG.reset(token)

    def crash_after(self, n: int | None, where: Callable[[Call], bool] | None = None) -> None:
        """Raise :class:`Crash` after the ``n``-th request from now (of those ``where`` selects) has taken
        effect; ``None``: never."""
        with self._lock:
            self._crash_where = where or (lambda call: True)
            self._crash_at = None if n is None else self._seen + n

    @property
    def crash_pending(self) -> bool:
        with self._lock:
            return self._crash_at is not None

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._by_tag.clear()

    def take(self) -> list[Call]:
        """The calls recorded so far, forgotten here (a long session keeps what it folded them into)."""
        with self._lock:
            taken, self.calls = self.calls, []
            self._by_tag.clear()
        return taken

    # -- queries ------------------------------------------------------------------------------------
    def select(self, service: str | None = None, tag: str | None = None) -> list[Call]:
        with self._lock:
            chosen = self.calls if tag is None else self._by_tag.get(tag, [])
            return [call for call in chosen if service is None or call.service == service]

    # -- hooks --------------------------------------------------------------------------------------
    def _before(self, model: Any, params: Json, context: Json, **_: Any) -> None:
        body = params.get("body") or b"{}"
        api = json.loads(body.decode() if isinstance(body, bytes) else body)
        pending = _Pending(time.perf_counter(), model.service_model.service_name, model.name, api)
        if pending.service == "dynamodb" and self._shadow is not None:
            pending.before = self._sizes_of_targets(pending.operation, api)
        context[_STATE] = pending

    def _after(self, http_response: Any, parsed: Json, model: Any, context: Json, **_: Any) -> None:
        pending: _Pending | None = context.get(_STATE)
        if pending is None:
            return
        ok = http_response.status_code < 300
        call = Call(
            service=pending.service,
            operation=pending.operation,
            params=pending.params,
            ok=ok,
            error_code=None if ok else str(parsed.get("Error", {}).get("Code")),
            started=pending.started,
            seconds=time.perf_counter() - pending.started,
            tag=_TAG.get(),
            thread=threading.get_ident(),
            run=attribution.current_run(),
        )
        if call.service == "sqs":
            call.billed_requests = _sqs_billed_requests(call.operation, pending.params, parsed)
            call.empty = call.operation == "ReceiveMessage" and ok and not parsed.get("Messages")
        elif call.service == "dynamodb" and self._shadow is not None:
            self._dynamodb_units(call, pending, parsed)
        # The meter's own reads (item sizes before and after) count as the request's time, not the caller's:
        # a Lambda's billed duration is its wall time less the requests' (``bench.stack.LambdaCall``).
        call.seconds = time.perf_counter() - pending.started
        with self._lock:
            self.calls.append(call)
            self._by_tag.setdefault(call.tag, []).append(call)
            counted = self._crash_at is not None and self._crash_where(call)
            if counted:
                self._seen += 1
            crash = counted and self._seen >= (self._crash_at or 0)
            if crash:
                self._crash_at = None
        if crash:
            raise Crash(f"crash injected after {call.service}.{call.operation} (tag {call.tag})")

    # -- DynamoDB units -----------------------------------------------------------------------------
    def _shadow_client(self) -> DynamoDBClient:
        """The un-metered client that reads item sizes (only asked for when the meter was given one)."""
        if self._shadow is None:
            raise RuntimeError("this meter has no shadow client to read item sizes with")
        return self._shadow

    def _describe(self, table: str) -> None:
        self._keys[table], self._indexes[table] = table_layout(self._shadow_client(), table)

    def _key_names(self, table: str) -> list[str]:
        if table not in self._keys:
            self._describe(table)
        return self._keys[table]

    def _index_list(self, table: str) -> list[Index]:
        if table not in self._indexes:
            self._describe(table)
        return self._indexes[table]

    def _item_at(self, table: str, key: Json) -> Json | None:
        answer = self._shadow_client().get_item(TableName=table, Key=key, ConsistentRead=True)
        item: Json | None = answer.get("Item")
        return item

    def _size_at(self, table: str, key: Json) -> int:
        return item_size(self._item_at(table, key))

    def _key_of(self, table: str, item: Json) -> Json:
        return {name: item[name] for name in self._key_names(table)}

    def _write_targets(self, operation: str, api: Json) -> list[tuple[str, str, Json, Json | None]]:
        """(kind, table, key, new item or None) of every item a write request touches."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = api["TableName"]
            new = api.get("Item")
            key = api.get("Key") or self._key_of(table, new or {})
            return [(operation, table, key, new)]
        if operation == "BatchWriteItem":
            targets = []
            for table, requests in api["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        new = request["PutRequest"]["Item"]
                        targets.append(("PutItem", table, self._key_of(table, new), new))
                    else:
                        targets.append(("DeleteItem", table, request["DeleteRequest"]["Key"], None))
            return targets
        if operation == "TransactWriteItems":
            targets = []
            for action in api["TransactItems"]:
                ((kind, spec),) = action.items()
                table = spec["TableName"]
                new = spec.get("Item")
                key = spec.get("Key") or self._key_of(table, new or {})
                targets.append((kind, table, key, new))
            return targets
        return []

    def _sizes_of_targets(self, operation: str, api: Json) -> dict[str, Json | None]:
        return {
            json.dumps([table, key], sort_keys=True): self._item_at(table, key)
            for _, table, key, _ in self._write_targets(operation, api)
        }

    def _dynamodb_units(self, call: Call, pending: _Pending, parsed: Json) -> None:
        op, api = call.operation, pending.params
        # Reads are billed on whole items, whatever a ProjectionExpression leaves out of the answer.
        if op == "GetItem":
            size = item_size(parsed.get("Item"))
            if "ProjectionExpression" in api:
                size = self._size_at(api["TableName"], api["Key"])
            call.read_units = read_units(size, consistent=bool(api.get("ConsistentRead")))
            self._read_on(call, api["TableName"], None, api["Key"], call.read_units)
        elif op in ("Query", "Scan"):
            call.read_units = self._query_units(api, parsed)
            table, index = api["TableName"], api.get("IndexName")
            hash_key = self._index_hash_key(table, index)
            partition = queried_partition(api, hash_key) if op == "Query" else None
            use = PartitionUse(table, index, partition or "*", read_units=call.read_units)
            call.partitions.append(use)
        elif op == "BatchGetItem":
            for table, request in api["RequestItems"].items():
                consistent = bool(request.get("ConsistentRead"))
                for key in request["Keys"]:
                    units = read_units(self._size_at(table, key), consistent=consistent)  # missing: 1 unit
                    call.read_units += units
                    self._read_on(call, table, None, key, units)
        elif op == "TransactGetItems":
            for action, answer in zip(api["TransactItems"], parsed.get("Responses", []), strict=False):
                units = read_units(item_size(answer.get("Item")), consistent=True, transactional=True)
                call.read_units += units
                self._read_on(call, action["Get"]["TableName"], None, action["Get"]["Key"], units)
        else:
            self._write_units(call, pending)

    def _index_hash_key(self, table: str, index: str | None) -> str:
        if index is None:
            return self._key_names(table)[0]
        return next(spec.keys[0] for spec in self._index_list(table) if spec.name == index)

    def _read_on(self, call: Call, table: str, index: str | None, key: Json, units: float) -> None:
        hash_key = self._index_hash_key(table, index)
        call.partitions.append(PartitionUse(table, index, _attribute_value(key[hash_key]), read_units=units))

    def _query_units(self, api: Json, parsed: Json) -> float:
        items = parsed.get("Items", [])
        size = sum(item_size(item) for item in items)
        scanned = int(parsed.get("ScannedCount", len(items)))
        if scanned > len(items) and items:  # a filter dropped items after they were read: scale up
            size = math.ceil(size * scanned / len(items))
        consistent = bool(api.get("ConsistentRead")) and "IndexName" not in api
        return read_units(size, consistent=consistent)

    def _write_units(self, call: Call, pending: _Pending) -> None:
        """Table units of every item written (transactions double them), then the index writes those items
        cause (standard writes: DynamoDB propagates index updates itself, outside the transaction)."""
        transactional = call.operation == "TransactWriteItems"
        for kind, table, key, new in self._write_targets(call.operation, pending.params):
            old = pending.before.get(json.dumps([table, key], sort_keys=True))
            after: Json | None = old
            if not call.ok or kind in ("DeleteItem", "Delete", "ConditionCheck"):
                # A failed condition costs the existing item's size (at least 1 unit); a ConditionCheck is
                # priced like a transactional write of the checked item (pessimistic).
                size = item_size(old)
                after = None if call.ok and kind in ("DeleteItem", "Delete") else old
            elif kind in ("PutItem", "Put"):
                after = new
                size = max(item_size(old), item_size(new))
            else:  # UpdateItem / Update
                after = self._item_at(table, key)
                size = max(item_size(old), item_size(after))
            units = write_units(size, transactional=transactional)
            call.write_units += units
            table_keys = self._key_names(table)
            partition = _attribute_value(key[table_keys[0]])
            call.items.append(ItemWrite(item_kind(table, key), partition, item_size(after), units))
            call.partitions.append(PartitionUse(table, None, partition, write_units=units))
            for index in self._index_list(table):
                sizes = index_writes(old, after, index, table_keys)
                keys_only = index_writes(old, after, index, table_keys, "KEYS_ONLY")
                index_units = sum(write_units(size) for size in sizes)
                call.index_write_units += index_units
                call.write_units += index_units
                call.index_write_units_keys_only += sum(write_units(size) for size in keys_only)
                call.partitions += _index_partition_writes(table, index, old, after, sizes)


def _index_partition_writes(
    table: str, index: Index, old: Json | None, new: Json | None, sizes: list[int]
) -> list[PartitionUse]:
    """The index partitions that ``sizes`` (from :func:`index_writes`) land on: a key change deletes from the
    old partition and puts into the new one; otherwise the item's one partition takes every write."""
    hash_key = index.keys[0]
    partitions = [item[hash_key] for item in (old, new) if item is not None and hash_key in item]
    if len(sizes) == 2 and len(partitions) == 2:
        places = partitions
    else:
        places = [partitions[-1]] * len(sizes) if partitions else []
    return [
        PartitionUse(table, index.name, _attribute_value(value), write_units=write_units(size))
        for value, size in zip(places, sizes, strict=True)
    ]


def _sqs_payload(operation: str, api: Json, parsed: Json) -> int:
    def message_bytes(body: str, attributes: Json | None) -> int:
        size = len(body.encode())
        for name, value in (attributes or {}).items():
            size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
            size += len(str(value.get("StringValue") or value.get("BinaryValue") or "").encode())
        return size

    if operation == "SendMessage":
        return message_bytes(api["MessageBody"], api.get("MessageAttributes"))
    if operation == "SendMessageBatch":
        return sum(message_bytes(e["MessageBody"], e.get("MessageAttributes")) for e in api["Entries"])
    if operation == "ReceiveMessage":
        return sum(
            message_bytes(m.get("Body", ""), m.get("MessageAttributes")) for m in parsed.get("Messages", [])
        )
    return 0


def _sqs_billed_requests(operation: str, api: Json, parsed: Json) -> int:
    """An SQS request is billed once per started 64 KB of payload (at least once)."""
    return max(1, math.ceil(_sqs_payload(operation, api, parsed) / prices.SQS_CHUNK_BYTES))

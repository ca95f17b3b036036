"""Virtual time for AWS calls: each thread has its own clock, each request advances it by AWS's latency.

A Lambda invocation that works on several threads spends its time on each at once; :class:`VirtualTime`
gives every thread a clock that starts where the invoking thread's clock stood and advances only by what
that thread's requests cost, so the real sweep code runs unchanged while minutes pass in milliseconds.
:class:`VirtualContext` is the Lambda context of one invocation (its remaining time read off the calling
thread's clock), and a request made past its deadline dies like the invocation would
(:class:`LambdaTimeout`). :func:`charged` applies the same to real (moto) boto3 clients;
:class:`StubDynamoDB` and :class:`StubSqs` answer the timers sweep's calls in memory, at AWS's latencies and
within its limits, for a million timers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError


class LambdaTimeout(BaseException):
    """The invocation reached its timeout: Lambda stops it, whatever it was doing (not catchable as an
    ``Exception``)."""


class VirtualTime:
    """Per-thread virtual clocks (seconds). Outside an invocation every thread reads :attr:`origin`."""

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        self._lock = threading.Lock()
        self._clocks: dict[int, float] = {}
        self._invoker: int | None = None
        self.deadline: float | None = None
        self.ended = origin

    def _read(self, thread: int) -> float:
        if thread in self._clocks:
            return self._clocks[thread]
        if self._invoker is not None:  # a thread the invocation started: it starts when the invoker is
            return self._clocks[self._invoker]
        return self.origin

    def now(self) -> float:
        with self._lock:
            return self._read(threading.get_ident())

    def spend(self, seconds: float) -> float:
        """Advance this thread's clock; :class:`LambdaTimeout` when that passes the invocation's deadline."""
        with self._lock:
            thread = threading.get_ident()
            moment = self._clocks[thread] = self._read(thread) + seconds
        if self.deadline is not None and moment > self.deadline:
            raise LambdaTimeout(f"the invocation timed out at {self.deadline:.1f} s (virtual)")
        return moment

    @contextlib.contextmanager
    def invocation(self, start: float, timeout: float) -> Iterator[VirtualContext]:
        """One invocation from ``start`` (virtual s) killed at ``start + timeout``; afterwards
        :attr:`ended` is when its last thread's last request ended."""
        with self._lock:
            self._clocks = {threading.get_ident(): start}
            self._invoker = threading.get_ident()
            self.deadline = start + timeout
        try:
            yield VirtualContext(self, start + timeout)
        finally:
            with self._lock:
                self.ended = max(self._clocks.values())
                self._clocks, self._invoker, self.deadline = {}, None, None
                self.origin = max(self.origin, self.ended)


class VirtualContext(LambdaContext):
    """The Lambda context of one virtual invocation: the time left on the calling thread's clock."""

    def __init__(self, time: VirtualTime, deadline: float) -> None:
        self._time = time
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return max(0, int((self._deadline - self._time.now()) * 1000))


@contextlib.contextmanager
def charged(clients: list[Any], time: VirtualTime, seconds: float) -> Iterator[None]:
    """Inside the block every request of the boto3 ``clients`` costs ``seconds`` of the calling thread's
    virtual time; one that would end past the invocation's deadline is never sent (the invocation died)."""

    def before(**_: Any) -> None:
        time.spend(seconds)

    unique = f"virtual-time-{id(time)}"
    for client in clients:
        client.meta.events.register("before-call.*.*", before, unique_id=unique)
    try:
        yield
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", unique_id=unique)


# AWS's per-call latencies as the simulation charges them (typical in-region figures, not worst cases).
QUERY_SECONDS = 0.010  # a Query page (up to 1 MB)
UPDATE_ITEM_SECONDS = 0.005
BATCH_WRITE_SECONDS = 0.015  # BatchWriteItem, 25 items
SEND_BATCH_SECONDS = 0.020  # SendMessageBatch, 10 messages
QUERY_PAGE_BYTES = 1024 * 1024
PARTITION_WRITE_UNITS = 1000  # per second and partition
BATCH_WRITE_MAX = 25
SEND_BATCH_MAX = 10

Item = dict[str, Any]


def _size(item: Item) -> int:
    """DynamoDB's item size, closely enough: names plus values."""
    return sum(len(name) + len(str(next(iter(value.values())))) for name, value in item.items())


class StubPartition:
    """One partition key's items, sorted by sort key; items are made when read (a million stay small)."""

    def __init__(self, make: Callable[[str], Item]) -> None:
        self._make = make
        self._keys: list[str] = []
        self._alive: set[str] = set()
        self._head = 0  # every key before it is deleted
        self._written: dict[int, int] = {}  # write units by virtual second

    def load(self, sort_keys: list[str]) -> None:
        self._keys = sorted(sort_keys)
        self._alive = set(self._keys)

    def below(self, bound: str, limit: int) -> tuple[list[Item], bool]:
        """The first ``limit`` items (at most 1 MB) whose sort key is below ``bound``; whether more may
        follow."""
        while self._head < len(self._keys) and self._keys[self._head] not in self._alive:
            self._head += 1
        found: list[Item] = []
        size = 0
        for key in itertools.islice(self._keys, self._head, None):
            if key >= bound:
                return found, False
            if key not in self._alive:
                continue
            if len(found) == limit or size >= QUERY_PAGE_BYTES:
                return found, True
            item = self._make(key)
            found.append(item)
            size += _size(item)
        return found, False

    def delete(self, key: str, second: int) -> bool:
        """Delete ``key`` (1 write unit); ``False`` when the partition's units of ``second`` are spent."""
        if self._written.get(second, 0) >= PARTITION_WRITE_UNITS:
            return False
        self._written[second] = self._written.get(second, 0) + 1
        self._alive.discard(key)
        return True

    def __len__(self) -> int:
        return len(self._alive)


def _refused(operation: str) -> ClientError:
    error: Any = {
        "Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
    }
    return ClientError(error, operation)


class StubDynamoDB:
    """The DynamoDB calls of the timers sweep, on :class:`StubPartition` s and the lease items, at AWS's
    latencies in :class:`VirtualTime` and its limits (1 MB pages, 25 writes a batch, 1,000 write units a
    second per partition: beyond them, ``UnprocessedItems``)."""

    def __init__(self, time: VirtualTime, partitions: dict[str, StubPartition]) -> None:
        self._time = time
        self.partitions = partitions
        self._leases: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def query(self, **request: Any) -> dict[str, Any]:
        self._time.spend(QUERY_SECONDS)
        self.calls["Query"] += 1
        values = request["ExpressionAttributeValues"]
        with self._lock:
            partition = self.partitions.get(values[":pk"]["S"])
            items, more = (
                partition.below(values[":armed"]["S"], request.get("Limit", 10**9))
                if partition
                else ([], False)
            )
        answer: dict[str, Any] = {"Items": items, "Count": len(items)}
        if more:
            answer["LastEvaluatedKey"] = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}
        return answer

    def update_item(self, **request: Any) -> dict[str, Any]:
        """A lease's take (``SET``: free, lapsed or already the caller's) or release (``REMOVE``: the
        caller's), the two conditional updates :mod:`polos.runtime.timer_leases` makes."""
        self._time.spend(UPDATE_ITEM_SECONDS)
        self.calls["UpdateItem"] += 1
        key = request["Key"]["pk"]["S"]
        values = request["ExpressionAttributeValues"]
        me = values[":me"]["S"]
        with self._lock:
            lease = self._leases.get(key, {})
            if request["UpdateExpression"].startswith("SET"):
                if lease and lease["owner"] != me and lease["until"] >= float(values[":now"]["N"]):
                    raise _refused("UpdateItem")
                self._leases[key] = {"owner": me, "until": float(values[":until"]["N"])}
            else:
                if lease.get("owner") != me:
                    raise _refused("UpdateItem")
                del self._leases[key]
        return {}

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        self._time.spend(BATCH_WRITE_SECONDS)
        self.calls["BatchWriteItem"] += 1
        second = int(self._time.now())
        unprocessed: dict[str, list[Any]] = {}
        for table, writes in request["RequestItems"].items():
            if len(writes) > BATCH_WRITE_MAX:
                raise ValueError(
                    f"BatchWriteItem takes at most {BATCH_WRITE_MAX} requests, got {len(writes)}"
                )
            for write in writes:
                key = write["DeleteRequest"]["Key"]
                with self._lock:
                    done = self.partitions[key["pk"]["S"]].delete(key["sk"]["S"], second)
                if not done:
                    unprocessed.setdefault(table, []).append(write)
        return {"UnprocessedItems": unprocessed}


class StubSqs:
    """``SendMessageBatch`` at AWS's latency; counts the resume messages sent, by run id."""

    def __init__(self, time: VirtualTime) -> None:
        self._time = time
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._time.spend(SEND_BATCH_SECONDS)
        if len(Entries) > SEND_BATCH_MAX:
            raise ValueError(f"SendMessageBatch takes at most {SEND_BATCH_MAX} messages, got {len(Entries)}")
        run_ids = [json.loads(entry["MessageBody"])["run_id"] for entry in Entries]
        with self._lock:
            self.calls["SendMessageBatch"] += 1
            self.sent.update(run_ids)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}

"""``throttle``: DynamoDB and SQS answer throttles as AWS does under load.

DynamoDB gives each partition at most 1,000 write and 3,000 read units per second; one partition key never
gets more. Locally the budget is scaled down (``WRITE_UNITS`` / ``READ_UNITS`` per partition key per
second) so a laptop reaches it. A request past its key's budget answers
``ProvisionedThroughputExceededException`` (a transaction: ``TransactionCanceledException`` with a
``ThrottlingError`` reason for the element), and a share of requests (``throttle=RATE``) is throttled at
random, SQS's included (``RequestThrottled``). botocore retries throttles with backoff, as on AWS; what is
still throttled after its retries reaches the function.

Units, simply: a write costs ceil(size / 1 KB) (twice in a transaction), charged before it is sent; a read
costs ceil(size / 4 KB) of what it returned, charged after. Sizes are those of the JSON wire form.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polos.aws.item_size import item_size

from infra.local.faults.injector import Injector
from infra.metering.units import READ_UNIT_BYTES, WRITE_UNIT_BYTES

WRITE_UNITS = 50  # per partition key per second (AWS: 1,000 per partition)
READ_UNITS = 150  # (AWS: 3,000)
PARTITION_KEY = "pk"  # every table of the model is keyed by pk (and its indexes by their hash key)

Json = dict[str, Any]
PartitionKey = tuple[str, str, str]  # table, index ('' for the table), partition key value


@dataclass(frozen=True)
class Throttle:
    """A throttle to answer: the error code and message, and extra body fields (cancellation reasons)."""

    code: str
    message: str
    extra: Json

    @classmethod
    def of(cls, code: str, message: str, **extra: Any) -> Throttle:
        return cls(code, message, extra)


def _write_units(request: Json) -> int:
    """A write's units: its item, key and expression values, by 1 KB."""
    parts = (request.get(name) for name in ("Item", "Key", "ExpressionAttributeValues"))
    return max(1, math.ceil(sum(item_size(part) for part in parts if part) / WRITE_UNIT_BYTES))


def _key_value(key: Json | None) -> str:
    value = (key or {}).get(PARTITION_KEY)
    return json.dumps(value, sort_keys=True) if value is not None else ""


def _query_key(params: Json, index_keys: Callable[[str, str], str]) -> PartitionKey | None:
    """The partition a Query reads: the value its key condition compares the hash key with."""
    table, index = params.get("TableName", ""), params.get("IndexName", "")
    hash_key = index_keys(table, index) if index else PARTITION_KEY
    names = {v: k for k, v in params.get("ExpressionAttributeNames", {}).items()}
    condition = params.get("KeyConditionExpression", "")
    for left, right in re.findall(r"([#\w]+)\s*=\s*(:\w+)", condition):
        if names.get(left, left) == hash_key:
            value = params.get("ExpressionAttributeValues", {}).get(right)
            return table, index, json.dumps(value, sort_keys=True)
    return None


class PartitionBudgets:
    """Units spent per partition key in the current second; spending past the budget is refused."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._second = -1
        self._writes: dict[PartitionKey, int] = {}
        self._reads: dict[PartitionKey, int] = {}

    def _roll(self) -> None:
        second = int(self._clock())
        if second != self._second:
            self._second, self._writes, self._reads = second, {}, {}

    def over(self, writes: dict[PartitionKey, int], reads: list[PartitionKey]) -> set[PartitionKey]:
        """The keys these writes would take past their write budget, or whose read budget is spent; when
        there are none, the writes are spent."""
        with self._lock:
            self._roll()
            over = {key for key, units in writes.items() if self._writes.get(key, 0) + units > WRITE_UNITS}
            over |= {key for key in reads if self._reads.get(key, 0) >= READ_UNITS}
            if not over:
                for key, units in writes.items():
                    self._writes[key] = self._writes.get(key, 0) + units
            return over

    def spend_reads(self, key: PartitionKey, units: int) -> None:
        with self._lock:
            self._roll()
            self._reads[key] = self._reads.get(key, 0) + units


_ITEM_WRITES = {"PutItem": "Item", "UpdateItem": "Key", "DeleteItem": "Key"}
_ITEM_READS = ("GetItem",)


def _element(kind: str, body: Json) -> tuple[str, Json]:
    """A transaction element's table and key (a Put's item holds its key)."""
    return body.get("TableName", ""), body.get("Item" if kind == "Put" else "Key", {})


class ThrottleFault:
    """Decides whether a function's DynamoDB or SQS request is throttled, and charges what it reads."""

    def __init__(self, injector: Injector, rate: float, index_keys: Callable[[str, str], str]) -> None:
        self._injector = injector
        self._rate = rate
        self._index_keys = index_keys  # (table, index) -> the index's hash key attribute
        self.budgets = PartitionBudgets()

    def check(self, service: str, operation: str, params: Json) -> Throttle | None:
        if service == "sqs":
            if self._injector.chance(self._rate):
                return self._count(Throttle.of("RequestThrottled", "Request is throttled."), operation)
            return None
        if service != "dynamodb":
            return None
        if operation in ("TransactWriteItems", "TransactGetItems"):
            return self._transaction(operation, params)
        writes, reads = self._demand(operation, params)
        over = self.budgets.over(writes, reads)
        if over:
            table, index, value = sorted(over)[0]
            return self._count(
                Throttle.of(
                    "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was exceeded. "
                    "Consider increasing your provisioning level with the UpdateTable API.",
                ),
                operation,
                f"partition key {value} of {table}{'/' + index if index else ''} over its budget",
            )
        if self._injector.chance(self._rate):
            code = ("ProvisionedThroughputExceededException", "ThrottlingException")[self._injector.pick(2)]
            return self._count(Throttle.of(code, "Throughput exceeds the current capacity."), operation)
        return None

    def charge_reads(self, operation: str, params: Json, parsed: Json) -> None:
        """After an answer: its reads cost ceil(size / 4 KB) units of the partition they read."""
        if operation == "GetItem" and parsed.get("Item"):
            item_key = (params.get("TableName", ""), "", _key_value(params.get("Key")))
            self.budgets.spend_reads(item_key, max(1, math.ceil(item_size(parsed["Item"]) / READ_UNIT_BYTES)))
        elif operation == "Query":
            queried = _query_key(params, self._index_keys)
            if queried is not None:
                size = sum(item_size(item) for item in parsed.get("Items", []))
                self.budgets.spend_reads(queried, max(1, math.ceil(size / READ_UNIT_BYTES)))

    def _demand(self, operation: str, params: Json) -> tuple[dict[PartitionKey, int], list[PartitionKey]]:
        table = params.get("TableName", "")
        writes: dict[PartitionKey, int] = {}
        reads: list[PartitionKey] = []
        if operation in _ITEM_WRITES:
            key = (table, "", _key_value(params.get(_ITEM_WRITES[operation])))
            writes[key] = _write_units(params)
        elif operation in _ITEM_READS:
            reads.append((table, "", _key_value(params.get("Key"))))
        elif operation == "Query":
            queried = _query_key(params, self._index_keys)
            reads += [queried] if queried is not None else []
        elif operation == "BatchWriteItem":
            for name, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    put, delete = request.get("PutRequest", {}), request.get("DeleteRequest", {})
                    key = (name, "", _key_value(put.get("Item") or delete.get("Key")))
                    writes[key] = writes.get(key, 0) + _write_units({**put, **delete})
        elif operation == "BatchGetItem":
            for name, request in params.get("RequestItems", {}).items():
                reads += [(name, "", _key_value(key)) for key in request.get("Keys", [])]
        return writes, reads

    def _transaction(self, operation: str, params: Json) -> Throttle | None:
        elements = params.get("TransactItems", [])
        keys: list[PartitionKey] = []
        writes: dict[PartitionKey, int] = {}
        reads: list[PartitionKey] = []
        for element in elements:
            ((kind, body),) = element.items()
            table, key = _element(kind, body)
            partition = (table, "", _key_value(key))
            keys.append(partition)
            if operation == "TransactGetItems":
                reads.append(partition)
            else:
                writes[partition] = writes.get(partition, 0) + 2 * _write_units(body)
        over = self.budgets.over(writes, reads)
        if not over and self._injector.chance(self._rate):
            over = {keys[self._injector.pick(len(keys))]} if keys else set()
        if not over:
            return None
        reasons = [
            {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity for the table."}
            if key in over
            else {"Code": "None"}
            for key in keys
        ]
        codes = ", ".join(reason["Code"] for reason in reasons)
        return self._count(
            Throttle.of(
                "TransactionCanceledException",
                f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                CancellationReasons=reasons,
            ),
            operation,
        )

    def _count(self, throttle: Throttle, operation: str, why: str = "at random") -> Throttle:
        self._injector.injected("throttle", f"{operation} answered {throttle.code} ({why})")
        return throttle

"""DynamoDB storage a workload leaves behind, priced for the retention period.

By DynamoDB's rules (https://aws.amazon.com/dynamodb/pricing/on-demand/, "Data storage"): every item is its
size plus 100 bytes of overhead, in the table and again in each global secondary index that holds it (its
projected attributes). Point-in-time recovery (continuous backups) is billed on the table's size, indexes
excluded. An item is billed for as long as it lives: until its TTL attribute's time plus the TTL deletion lag
(an ``Idempotency-Key`` record lives a day, a run its retention period), or the retention period when it has
none. :func:`measure` weighs each item's bytes by that life over the retention period's, so the bill prices
every byte for the retention period (``retention_months``) and each item still for its own life.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polos.aws.item_size import item_size

from infra.metering.meter import index_item_size, table_layout

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ITEM_OVERHEAD_BYTES = 100
# TTL deletes an expired item "typically within a few days" of its expiry, so it is stored (and backed up)
# past the retention period: counted as 2 more days
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html).
TTL_DELETE_LAG_DAYS = 2
HOURS_PER_MONTH = 730  # AWS's billing month


@dataclass(frozen=True)
class Stored:
    """Bytes held by some tables for the retention period (an item that lives half of it counts half its
    bytes): table items, their index copies, and the copies a keys-only index has."""

    table_bytes: float = 0
    index_bytes: float = 0
    index_bytes_keys_only: float = 0

    def __sub__(self, other: Stored) -> Stored:
        return Stored(
            self.table_bytes - other.table_bytes,
            self.index_bytes - other.index_bytes,
            self.index_bytes_keys_only - other.index_bytes_keys_only,
        )


def _items(client: DynamoDBClient, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def measure(
    client: DynamoDBClient, tables: list[str], retention_days: int, now: float | None = None
) -> Stored:
    """What ``tables`` hold now (read through an un-metered client), each item weighed by its life."""
    now = time.time() if now is None else now
    table_bytes = index_bytes = keys_only = 0.0
    for table in tables:
        keys, indexes = table_layout(client, table)
        ttl = ttl_attribute(client, table)
        for item in _items(client, table):
            life = life_share(item.get(ttl) if ttl else None, retention_days, now)
            table_bytes += (item_size(item) + ITEM_OVERHEAD_BYTES) * life
            for index in indexes:
                if size := index_item_size(item, index, keys):
                    index_bytes += (size + ITEM_OVERHEAD_BYTES) * life
                    keys_only_size = index_item_size(item, index, keys, "KEYS_ONLY")
                    keys_only += (keys_only_size + ITEM_OVERHEAD_BYTES) * life
    return Stored(table_bytes, index_bytes, keys_only)


def ttl_attribute(client: DynamoDBClient, table: str) -> str | None:
    """The table's TTL attribute, when TTL is on."""
    described = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    on = described.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return described.get("AttributeName") if on else None


def life_share(expires: Any, retention_days: int, now: float) -> float:
    """An item's billed life (to its TTL time plus the deletion lag; the retention period's without one)
    over the retention period's."""
    lag, retention = TTL_DELETE_LAG_DAYS * 86_400, retention_days * 86_400
    if not expires or "N" not in expires:
        return 1.0
    return (max(0.0, float(expires["N"]) - now) + lag) / (retention + lag)


def retention_months(days: int) -> float:
    return days * 24 / HOURS_PER_MONTH

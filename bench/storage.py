"""DynamoDB storage a workload leaves behind, priced for the retention period.

By DynamoDB's rules (https://aws.amazon.com/dynamodb/pricing/on-demand/, "Data storage"): every item is its
size plus 100 bytes of overhead, in the table and again in each global secondary index that holds it (its
projected attributes). Point-in-time recovery (continuous backups) is billed on the table's size, indexes
excluded. Items live for the retention period (TTL), so each stored byte is billed for retention / 1 month.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.metering.meter import index_item_size, table_layout
from infra.metering.units import item_size

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
    """Bytes held by some tables: table items, their index copies, and the copies a keys-only index has."""

    table_bytes: int = 0
    index_bytes: int = 0
    index_bytes_keys_only: int = 0

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


def measure(client: DynamoDBClient, tables: list[str]) -> Stored:
    """What ``tables`` hold now (read through an un-metered client)."""
    table_bytes = index_bytes = keys_only = 0
    for table in tables:
        keys, indexes = table_layout(client, table)
        for item in _items(client, table):
            table_bytes += item_size(item) + ITEM_OVERHEAD_BYTES
            for index in indexes:
                if size := index_item_size(item, index, keys):
                    index_bytes += size + ITEM_OVERHEAD_BYTES
                    keys_only += index_item_size(item, index, keys, "KEYS_ONLY") + ITEM_OVERHEAD_BYTES
    return Stored(table_bytes, index_bytes, keys_only)


def retention_months(days: int) -> float:
    return days * 24 / HOURS_PER_MONTH

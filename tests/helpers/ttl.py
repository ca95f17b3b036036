"""DynamoDB's TTL, which moto does not run: delete what has expired on the (test-moved) wait clock."""

from __future__ import annotations

from typing import Any

from polos.aws import settings
from polos.runtime import clock


def _tables() -> list[str]:
    config = settings.get_settings()
    return [config.runs_table, config.events_table]


def expire(now: float | None = None) -> int:
    """Delete every item whose ``expires_at`` is before ``now`` (the wait clock); how many were deleted."""
    moment = clock.now() if now is None else now
    client = settings.dynamodb()
    deleted = 0
    for table in _tables():
        for item in scan(table):
            if "expires_at" in item and float(item["expires_at"]["N"]) < moment:
                client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
                deleted += 1
    return deleted


def scan(table: str) -> list[dict[str, Any]]:
    """Every item of ``table``."""
    client = settings.dynamodb()
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def expiries(run_id: str) -> dict[str, float]:
    """``expires_at`` of each item of a run's partition, by sort key."""
    client = settings.dynamodb()
    items = client.query(
        TableName=settings.get_settings().runs_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"run#{run_id}"}},
    )["Items"]
    return {item["sk"]["S"]: float(item["expires_at"]["N"]) for item in items}


def event_expiries(topic: str) -> dict[int, float]:
    """``expires_at`` of each stored event of ``topic``, by sequence id (every block of the topic)."""
    items = settings.dynamodb().scan(TableName=settings.get_settings().events_table)["Items"]
    return {
        int(item["sk"]["S"]): float(item["expires_at"]["N"])
        for item in items
        if item["pk"]["S"].split("#")[:2] == ["topic", topic]
    }

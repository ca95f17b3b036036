"""Splitting work into AWS batch-API calls and backing off between retries of their leftovers; reading a
``Query`` to its last page.

The batch APIs (``BatchWriteItem``, ``BatchGetItem``, ``TransactWriteItems``, ``SendMessageBatch``) cap
each call by entry count and total size, and report partial failures in their answers rather than as
errors; botocore's own retries never see those, so the callers retry the leftovers with :func:`pause`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef

T = TypeVar("T")

MAX_ATTEMPTS = 8
BATCH_WRITE_MAX_ITEMS = 25  # DynamoDB BatchWriteItem: 25 requests and 16 MB per call
BATCH_WRITE_MAX_BYTES = 16 * 1024 * 1024
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 2.0


def chunked(
    items: Sequence[T], max_count: int, max_bytes: int, size: Callable[[T], int]
) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` with at most ``max_count`` entries and ``max_bytes`` total ``size``.

    An item bigger than ``max_bytes`` on its own is yielded alone; the API call names the problem.
    """
    chunk: list[T] = []
    total = 0
    for item in items:
        item_size = size(item)
        if chunk and (len(chunk) == max_count or total + item_size > max_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += item_size
    if chunk:
        yield chunk


def pause(attempt: int) -> None:
    """Sleep before retry ``attempt`` (1-based): exponential backoff with full jitter, capped."""
    delay = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempt - 1))
    time.sleep(random.uniform(0, delay))


class UnprocessedWritesError(RuntimeError):
    """``BatchWriteItem`` left items unprocessed after every retry."""


def write_all(client: DynamoDBClient, table: str, requests: list[WriteRequestTypeDef]) -> None:
    """One ``BatchWriteItem`` call's worth of ``requests`` (≤ 25, ≤ 16 MB), retrying unprocessed items."""
    pending = requests
    for attempt in range(1, MAX_ATTEMPTS + 1):
        answer = client.batch_write_item(RequestItems={table: pending})
        pending = answer.get("UnprocessedItems", {}).get(table, [])  # type: ignore[assignment]
        if not pending:
            return
        if attempt < MAX_ATTEMPTS:
            pause(attempt)
    raise UnprocessedWritesError(f"{len(pending)} item(s) stayed unprocessed after {MAX_ATTEMPTS} attempts")


def query_all(client: DynamoDBClient, **query: Any) -> list[dict[str, Any]]:
    """Every item a DynamoDB ``Query`` answers, page after page (one request unless past 1 MB)."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.query(**query)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

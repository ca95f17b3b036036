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
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef, WriteRequestTypeDef

T = TypeVar("T")

MAX_ATTEMPTS = 8
BATCH_WRITE_MAX_ITEMS = 25  # DynamoDB BatchWriteItem: 25 requests and 16 MB per call
BATCH_WRITE_MAX_BYTES = 16 * 1024 * 1024
BATCH_GET_MAX_KEYS = 100  # DynamoDB BatchGetItem: 100 keys (and 16 MB of answer) per call
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


class UnprocessedKeysError(RuntimeError):
    """``BatchGetItem`` left keys unread after every retry."""


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
    return [item for page in query_pages(client, **query) for item in page]


def query_pages(client: DynamoDBClient, **query: Any) -> Iterator[list[dict[str, Any]]]:
    """A DynamoDB ``Query``'s items a page (one request, ≤ 1 MB) at a time, read as they are asked for."""
    while True:
        page = client.query(**query)
        yield page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


Key = tuple[str, str]


def get_all(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[Key],
    *,
    consistent: bool = False,
    projection: str | None = None,
) -> dict[Key, dict[str, Any]]:
    """The items of ``keys`` (``(pk, sk)`` pairs) that exist, by key: ``BatchGetItem`` calls of at most 100
    keys, each retrying its ``UnprocessedKeys`` (too much throughput, or past 16 MB of answer) with
    :func:`pause`, at most :data:`MAX_ATTEMPTS` times (then :class:`UnprocessedKeysError`)."""
    found: dict[Key, dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for chunk in chunked(unique, BATCH_GET_MAX_KEYS, BATCH_GET_MAX_KEYS, lambda _: 1):
        wanted: KeysAndAttributesTypeDef = {
            "Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in chunk],
            "ConsistentRead": consistent,
        }
        if projection is not None:
            wanted["ProjectionExpression"] = projection
        request: dict[str, KeysAndAttributesTypeDef] = {table: wanted}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            answer = client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                found[(str(item["pk"]["S"]), str(item["sk"]["S"]))] = item
            request = answer.get("UnprocessedKeys") or {}  # type: ignore[assignment]
            if not request:
                break
            if attempt == MAX_ATTEMPTS:
                left = len(request[table]["Keys"]) if table in request else 0
                raise UnprocessedKeysError(f"{left} key(s) stayed unread after {MAX_ATTEMPTS} attempts")
            pause(attempt)
    return found

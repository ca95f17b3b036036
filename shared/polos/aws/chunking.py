"""Splitting work into AWS batch-API calls and backing off between retries of their leftovers.

The batch APIs (``BatchWriteItem``, ``BatchGetItem``, ``TransactWriteItems``, ``SendMessageBatch``) cap
each call by entry count and total size, and report partial failures in their answers rather than as
errors; botocore's own retries never see those, so the callers retry the leftovers with :func:`pause`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

MAX_ATTEMPTS = 8
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

"""SQS partial batch responses: every record of an event handled concurrently, failures reported by id.

A record whose handler raises is left for SQS to deliver again (its ``messageId`` goes into
``batchItemFailures``); every other record is acknowledged. The whole batch failing is an answer like any
other (no exception), so SQS redelivers exactly the failed records.

The standards prefer Powertools' batch processing (``AsyncBatchProcessor``); it is not used here because
importing ``aws_lambda_powertools.utilities.batch`` imports every event data class of Powertools (SQS,
Kinesis, DynamoDB streams, Kafka, ... ~20 ms of the worker's ~225 ms cold import, issue 12), and the
worker's cold-start target (1.6x ``import boto3``) cannot be met with it. What the worker used of it is
this module: concurrency, per-record failures by ``messageId``, no exception when all records fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypedDict

# Powertools' processor logged a record's failure at DEBUG on its own logger; so does this one (the worker
# logs the reasons it leaves a record itself).
_log = logging.getLogger(__name__)

Record = dict[str, Any]
RecordHandler = Callable[[Record], Awaitable[object]]


class BatchItemFailure(TypedDict):
    """One record SQS is to deliver again."""

    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    """The answer of a function behind an SQS event source mapping with ``ReportBatchItemFailures``."""

    batchItemFailures: list[BatchItemFailure]


def message_ids(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each record's ``messageId``; ``ValueError`` naming the first record that has none."""
    ids = []
    for index, record in enumerate(records):
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            raise ValueError(f"SQS record {index} has no messageId; it cannot be acknowledged on its own")
        ids.append(message_id)
    return ids


def process_partial_batch(event: Mapping[str, Any], handler: RecordHandler) -> PartialBatchResponse:
    """Run ``handler`` on every record of an SQS ``event`` at once; the records it raised for are failures.

    An event without records answers no failures; a malformed ``Records`` or a record without
    ``messageId`` raises ``ValueError`` before any record runs (nothing is half-done).
    """
    records = event.get("Records") or []
    if not isinstance(records, list):
        raise ValueError(f"SQS event Records must be a list, got {type(records).__name__}")
    ids = message_ids(records)
    if not records:
        return {"batchItemFailures": []}
    succeeded = asyncio.run(_run_all(records, ids, handler))
    failed = [message_id for message_id, ok in zip(ids, succeeded, strict=True) if not ok]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


async def _run_all(records: list[Record], ids: list[str], handler: RecordHandler) -> list[bool]:
    return list(await asyncio.gather(*(_run_one(r, i, handler) for r, i in zip(records, ids, strict=True))))


async def _run_one(record: Record, message_id: str, handler: RecordHandler) -> bool:
    try:
        await handler(record)
    except Exception as exc:  # one record's failure must not stop the others
        _log.debug("record %s left for redelivery: %s: %s", message_id, type(exc).__name__, exc)
        return False
    return True

"""Deferral: a record whose handling met overload of our own AWS calls comes back later, for free.

Leaving such a record in ``batchItemFailures`` would spend one of its receives (SQS counts each one, and
``maxReceiveCount`` dead-letters the message), and a visibility change would too. Instead the record's body
is sent again with a ``DelaySeconds`` backoff and the record is acknowledged: the new message starts with no
receives, so a throttle never brings a run closer to its dead-letter queue. The message attribute
``polos-deferrals`` counts the deferrals for the backoff (equal jitter, doubling from 1-2 s to the
15-minute maximum SQS allows). A crash between the send and the acknowledgement leaves two copies, which
the worker handles like any duplicate delivery (the run id or the batch claims are the same).
"""

from __future__ import annotations

import random
from typing import Any

from polos.aws import observability, settings

ATTRIBUTE = "polos-deferrals"
BASE_DELAY_SECONDS = 2
MAX_DELAY_SECONDS = 900  # SQS's DelaySeconds maximum

logger = observability.logger


def deferrals(record: dict[str, Any]) -> int:
    """How often the record's message was deferred before (0 for a message never deferred)."""
    attribute = (record.get("messageAttributes") or {}).get(ATTRIBUTE) or {}
    try:
        return max(0, int(attribute.get("stringValue") or 0))
    except ValueError:
        return 0


def delay_seconds(deferred_before: int) -> int:
    """The delay of the next deferral: uniform in [c/2, c], c = min(900, 2 x 2^deferred_before)."""
    ceiling = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** min(deferred_before, 10))
    return round(random.uniform(ceiling / 2, ceiling))


def defer(record: dict[str, Any], workflow_id: str) -> int:
    """Send the record's body again to its workflow's queue, delayed; returns the delay (seconds). The
    caller acknowledges the record once this returns (raises when SQS did not take the message)."""
    count = deferrals(record)
    delay = delay_seconds(count)
    settings.sqs().send_message(
        QueueUrl=settings.get_settings().queue_url(workflow_id),
        MessageBody=str(record["body"]),
        DelaySeconds=delay,
        MessageAttributes={ATTRIBUTE: {"DataType": "Number", "StringValue": str(count + 1)}},
    )
    observability.count("DeliveriesDeferred")
    logger.warning(
        "AWS overloaded: delivery deferred",
        extra={"message_id": record.get("messageId"), "delay_s": delay, "deferrals": count + 1},
    )
    return delay

"""Fan-out: workflow messages to the workflows' SQS queues with ``SendMessageBatch``.

One code path serves the HTTP API, ``ctx.step.publish_event`` and direct invocation. Calls go out one after
another: each is a few milliseconds, and a publisher that crashes midway leaves a prefix delivered, which
the retry completes (delivery is at-least-once; the worker turns duplicates away by run id).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from polos.aws import settings
from polos.aws.chunking import MAX_ATTEMPTS, chunked, pause
from polos.payloads import EventItem
from polos.publish import manifest
from polos.publish.messages import MAX_MESSAGE_BYTES, WorkflowMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger(service="polos")

BATCH_MAX_MESSAGES = 10
BATCH_MAX_BYTES = MAX_MESSAGE_BYTES  # SQS: 1 MiB per message and per SendMessageBatch call


class FanoutError(RuntimeError):
    """Messages could not be sent to a workflow queue (after retrying the failed entries)."""


def event_messages(topic: str, events: Iterable[EventItem]) -> list[WorkflowMessage]:
    """One message per event (in sequence order) for every workflow subscribed to canonical ``topic``."""
    ordered = sorted(events, key=lambda event: event.sequence_id)
    return [
        WorkflowMessage(workflow_id=workflow_id, kind="event", event=event)
        for workflow_id in manifest.current().subscribers(topic)
        for event in ordered
    ]


def deliver(messages: list[WorkflowMessage]) -> None:
    """Send every message to its workflow's queue, in order per queue; raises :class:`FanoutError`."""
    config = settings.get_settings()
    by_queue: dict[str, list[tuple[str, int]]] = {}
    for message in messages:
        body = message.to_json()
        if len(body.encode()) > BATCH_MAX_BYTES:
            raise FanoutError(
                f"message for workflow {message.workflow_id!r} is {len(body.encode())} bytes; "
                f"SQS takes at most {BATCH_MAX_BYTES}"
            )
        by_queue.setdefault(config.queue_url(message.workflow_id), []).append((body, message.delay_seconds))
    for queue_url, entries in by_queue.items():
        send_bodies(queue_url, entries)


def send_bodies(queue_url: str, entries: list[tuple[str, int]]) -> None:
    """Send ``(body, delay seconds)`` entries as they are to one queue, in order (redrive re-sends dead
    letters with it)."""
    for chunk in chunked(entries, BATCH_MAX_MESSAGES, BATCH_MAX_BYTES, lambda e: len(e[0].encode())):
        _send(queue_url, chunk)


def _send(queue_url: str, entries: list[tuple[str, int]]) -> None:
    pending: list[SendMessageBatchRequestEntryTypeDef] = [
        {"Id": str(index), "MessageBody": body, "DelaySeconds": delay}
        for index, (body, delay) in enumerate(entries)
    ]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        answer = settings.sqs().send_message_batch(QueueUrl=queue_url, Entries=pending)
        failed = answer.get("Failed", [])
        if not failed:
            return
        sender_faults = [entry for entry in failed if entry.get("SenderFault")]
        if sender_faults or attempt == MAX_ATTEMPTS:
            first = (sender_faults or failed)[0]
            raise FanoutError(
                f"{len(failed)} message(s) to {queue_url} failed after {attempt} attempt(s): "
                f"{first.get('Code')}: {first.get('Message', '')}"
            )
        retry_ids = {entry["Id"] for entry in failed}
        pending = [entry for entry in pending if entry["Id"] in retry_ids]
        logger.warning("messages failed; retrying", extra={"queue_url": queue_url, "failed": len(pending)})
        pause(attempt)

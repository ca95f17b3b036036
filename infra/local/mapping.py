"""The SQS event source mapping, emulated around the worker function.

Per workflow queue, like Lambda's pollers: receive messages until ``BatchSize`` are in hand or
``MaximumBatchingWindowInSeconds`` has passed since the first one (no window: one receive's worth),
invoke the function with the SQS event Lambda would build, delete what it did not report in
``batchItemFailures`` and leave the rest to the queue's visibility timeout; a failed invocation leaves
the whole batch. The queue's redrive policy moves a message to its dead-letter queue after the max
receive count. :class:`Pollers` runs every mapping on its own thread; :func:`drain` runs them in turn on
the caller's thread until the queues are idle (tests). Under ``--aws-faults`` a mapping's
:class:`~infra.local.faults.queues.QueueFaults` reorders receives, delivers copies, cuts batches to
Lambda's payload limit and sets how many pollers (threads) each queue gets.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.local.aws import REGION
from infra.local.faults.pollers import Quiesce
from infra.model import WorkflowQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from infra.local.faults.queues import QueueFaults

logger = logging.getLogger(__name__)

MAX_RECEIVE = 10  # ReceiveMessage's MaxNumberOfMessages limit
SHORT_PAUSE_SECONDS = 0.05

Invoke = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class MappingSpec:
    """One mapping: the queue it polls and its batching settings (from the infrastructure model)."""

    workflow_id: str
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: int = 0
    max_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency: invocations at once

    @classmethod
    def of(cls, queue: WorkflowQueue, queue_url: str, queue_arn: str) -> MappingSpec:
        return cls(
            queue.workflow_id,
            queue_url,
            queue_arn,
            queue.batch_size,
            queue.batching_window_seconds or 0,
            queue.max_concurrency,
        )


@dataclass
class Delivery:
    """One invocation: the messages it carried, those left on the queue, and the invocation's error."""

    workflow_id: str
    messages: list[MessageTypeDef]
    failed: list[MessageTypeDef] = field(default_factory=list)
    error: BaseException | None = None


def sqs_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """A message as Lambda puts it in an SQS event's ``Records``."""
    attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        binary = value.get("BinaryValue")
        attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
            "dataType": value["DataType"],
        }
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids(result: Any, ids: Sequence[str]) -> set[str]:
    """The message ids an invocation's answer leaves on the queue (Lambda's ReportBatchItemFailures rules):
    no answer or no failures is complete success; a malformed answer or an unknown id fails the batch."""
    if result is None or result == "":
        return set()
    if not isinstance(result, dict):
        return set(ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(ids)
    found: set[str] = set()
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in ids:
            return set(ids)
        found.add(item)
    return found


class EventSourceMapping:
    """Collects batches from one queue and invokes the function with them."""

    def __init__(
        self,
        spec: MappingSpec,
        sqs: SQSClient,
        invoke: Invoke,
        *,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], Any] = time.sleep,
        faults: QueueFaults | None = None,
    ) -> None:
        self.spec = spec
        self._sqs = sqs
        self._invoke = invoke
        # Lambda's maximum concurrency: a poller at the limit receives nothing until an invocation ends.
        self._slots = threading.BoundedSemaphore(spec.max_concurrency) if spec.max_concurrency else None
        self._clock = clock
        self._pause = pause
        self.faults = faults

    @property
    def pollers(self) -> int:
        """Concurrent pollers of this queue (1 unless ``pollers`` is among the faults)."""
        return self.faults.pollers if self.faults is not None else 1

    def _receive(self, count: int, wait_seconds: int) -> list[MessageTypeDef]:
        answer = self._sqs.receive_message(
            QueueUrl=self.spec.queue_url,
            MaxNumberOfMessages=min(MAX_RECEIVE, count),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return answer.get("Messages", [])

    def collect(
        self, *, wait_seconds: int, flush: bool = False, stopping: Callable[[], bool] = lambda: False
    ) -> list[MessageTypeDef]:
        """Receive one batch. The first receive long-polls ``wait_seconds``; then messages accumulate until
        ``batch_size`` or the window, measured from the first message. ``flush`` takes only what is
        visible now (no window wait). Returns ``[]`` when nothing arrived."""
        size, window = self.spec.batch_size, self.spec.window_seconds
        batch: dict[str, MessageTypeDef] = {}  # by message id: one seen again keeps its newest receipt handle
        copies = self.faults.copies(size) if self.faults is not None else []  # `duplicates`: SQS again
        first_at: float | None = self._clock() if copies else None
        while len(batch) + len(copies) < size and not stopping():
            wait = wait_seconds
            if first_at is not None:
                remaining = window - (self._clock() - first_at)
                if flush:
                    wait = 0
                elif window <= 0 or remaining <= 0:
                    break
                else:
                    wait = min(wait_seconds, int(remaining))
            messages = self._receive(size - len(batch) - len(copies), wait)
            if self.faults is not None:
                copies += self.faults.received(messages)
            if messages:
                first_at = self._clock() if first_at is None else first_at
                batch.update((m["MessageId"], m) for m in messages)
            elif first_at is None or flush:
                break
            elif wait == 0:
                self._pause(min(SHORT_PAUSE_SECONDS, max(0.0, remaining)))
        return list(batch.values()) + copies

    def deliver(self, messages: list[MessageTypeDef]) -> Delivery:
        """Invoke the function with ``messages``; delete the ones it processed."""
        delivery = Delivery(self.spec.workflow_id, messages)
        event = {"Records": [sqs_record(m, self.spec.queue_arn) for m in messages]}
        ids = [m["MessageId"] for m in messages]
        try:
            result = self._invoke(event)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a crashed invocation: Lambda leaves the whole batch on the queue
            logger.error("worker invocation for %s failed: %r", self.spec.workflow_id, exc)
            delivery.error = exc
            delivery.failed = self._originals(list(messages))
            return delivery
        failed = failed_ids(result, ids)
        delivery.failed = self._originals([m for m in messages if m["MessageId"] in failed])
        self.delete(self._originals([m for m in messages if m["MessageId"] not in failed]))
        return delivery

    def _originals(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """Without the copies ``duplicates`` made: only what SQS holds is deleted or left on the queue."""
        return self.faults.originals(messages) if self.faults is not None else messages

    def poll(
        self, *, wait_seconds: int, flush: bool = False, stopping: Callable[[], bool] = lambda: False
    ) -> Delivery | None:
        """Collect a batch and deliver it; ``None`` when the queue had nothing (or we are stopping). At the
        mapping's maximum concurrency a poller waits for an invocation to end before it receives."""
        if self._slots is None:
            return self._poll(wait_seconds=wait_seconds, flush=flush, stopping=stopping)
        with self._slots:
            return self._poll(wait_seconds=wait_seconds, flush=flush, stopping=stopping)

    def _poll(self, *, wait_seconds: int, flush: bool, stopping: Callable[[], bool]) -> Delivery | None:
        messages = self.collect(wait_seconds=wait_seconds, flush=flush, stopping=stopping)
        if not messages:
            return None
        if stopping():
            self.release(self._originals(messages))
            return None
        if self.faults is not None:  # `limits`: the batch is cut to Lambda's 6 MB, the rest goes back
            carried = self.faults.fitting([sqs_record(m, self.spec.queue_arn) for m in messages])
            if carried < len(messages):
                self.release(self._originals(messages[carried:]))
                messages = messages[:carried]
        return self.deliver(messages)

    def delete(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start : start + MAX_RECEIVE]
            answer = self._sqs.delete_message_batch(
                QueueUrl=self.spec.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in answer.get("Failed", []):
                # A receipt handle from before a redelivery: the message comes back and is deleted then.
                logger.warning("could not delete a message of %s: %s", self.spec.workflow_id, failure)

    def release(self, messages: Sequence[MessageTypeDef]) -> None:
        """Make ``messages`` visible again now (instead of after the visibility timeout)."""
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start : start + MAX_RECEIVE]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.spec.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )

    def pending(self) -> int:
        """Messages on the queue, visible or in flight (not delayed ones: a wake-up set for later is
        the future, not work in progress)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.spec.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        copies = self.faults.waiting() if self.faults is not None else 0
        return sum(int(value) for value in attributes.values()) + copies


class Pollers:
    """Every mapping polled on its own thread, so workflows run concurrently (the worker's handler is
    synchronous at its Lambda boundary)."""

    def __init__(
        self,
        mappings: Sequence[EventSourceMapping],
        *,
        wait_seconds: int = 1,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._mappings = list(mappings)
        self._wait_seconds = wait_seconds  # short long polls: stopping takes at most this long
        self._on_delivery = on_delivery
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for mapping in self._mappings:
            busy = threading.Event()  # the queue had messages at its last poll: every poller polls
            for poller in range(mapping.pollers):
                thread = threading.Thread(
                    target=self._loop,
                    args=(mapping, busy, poller == 0),
                    name=f"mapping-{mapping.spec.workflow_id}-{poller}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _loop(self, mapping: EventSourceMapping, busy: threading.Event, first: bool) -> None:
        """Poll and deliver until stopped. The first poller of a queue always polls; the others (the
        ``pollers`` fault) join it while the queue is busy, as Lambda scales its pollers with the backlog,
        so an idle stack does not make a receive per poller each second."""
        while not self._stop.is_set():
            if not first and not busy.wait(self._wait_seconds):
                continue
            try:
                delivery = mapping.poll(wait_seconds=self._wait_seconds, stopping=self._stop.is_set)
                if delivery is None:
                    busy.clear()
                else:
                    busy.set()
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("polling the queue of %s failed; retrying", mapping.spec.workflow_id)
                self._stop.wait(1.0)
                continue
            if delivery is not None and self._on_delivery is not None:
                self._on_delivery(delivery)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop polling; invocations in progress finish. ``False`` if some still ran at ``timeout``."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


def drain(
    mappings: Sequence[EventSourceMapping],
    *,
    flush_windows: bool = True,
    redeliver_failures: bool = False,
    timeout: float = 60.0,
    on_delivery: Callable[[Delivery], None] | None = None,
) -> list[Delivery]:
    """Deliver every message until no queue has any left, visible or in flight: on the caller's thread, or
    on as many threads as the most pollers a mapping has (``pollers`` fault).

    ``flush_windows`` invokes batch workflows with what is there instead of waiting out their windows;
    ``redeliver_failures`` makes failed messages visible at once instead of after the visibility timeout
    (the max receive count and the dead-letter queue still apply). ``on_delivery`` and those releases run
    while no invocation does. ``TimeoutError`` after ``timeout`` s.
    """
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + timeout
    quiesce = Quiesce()

    def settle(mapping: EventSourceMapping, delivery: Delivery) -> None:
        deliveries.append(delivery)
        if on_delivery is None and not (redeliver_failures and delivery.failed):
            return
        with quiesce.pause():
            if on_delivery is not None:
                on_delivery(delivery)
            if redeliver_failures and delivery.failed:
                mapping.release(delivery.failed)

    def drain_here() -> None:
        while True:
            progressed = False
            for mapping in mappings:
                with quiesce.invocation():
                    delivery = mapping.poll(wait_seconds=0, flush=flush_windows)
                if delivery is None:
                    continue
                progressed = True
                settle(mapping, delivery)
            if not progressed and not any(mapping.pending() for mapping in mappings):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still busy after {timeout} s of draining")
            if not progressed:
                time.sleep(SHORT_PAUSE_SECONDS)

    threads = max((mapping.pollers for mapping in mappings), default=1)
    if threads == 1:
        drain_here()
        return deliveries
    errors: list[BaseException] = []

    def drain_thread() -> None:
        try:
            drain_here()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=drain_thread, name=f"drain-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return deliveries

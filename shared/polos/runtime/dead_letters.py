"""Dead letters: failing the run a message gave up on, listing a workflow's dead-letter queue, redriving it.

``max_attempts`` (:func:`attempts_allowed`) counts executions of the workflow's code, not receives: the run
item's ``message_attempts`` gains one with each lease taken and is cleared when an execution ends well
(completed, waiting, cancelled) or the run is redriven, so a receive that executes nothing (a duplicate
turned away, a wake-up not yet due, a throttle before the lease) never counts. The execution that fails
with ``message_attempts == max_attempts``, or the next one when they all died without an outcome, fails
the run and marks it ``dead_letter``; the worker then sends the message to the dead-letter queue itself
and deletes it (:func:`dead_letter_if_marked`). A crash in between leaves the message, whose next delivery
finds the mark and dead-letters it again (a duplicate dead letter is harmless, see below).

The queue's ``maxReceiveCount`` (:func:`polos.aws.attempts.receive_limit`) stays behind it as a backstop: its
last receive (:func:`settle_exhausted`) runs nothing and only fails a run that no attempt finished and that
no live attempt holds, with a ``DeliveryExhausted`` error. It leaves the message, so SQS moves it to the
dead-letter queue at its next receive, where :func:`list_dead_letters` shows it and :func:`redrive` puts it
back.

Redrive is ReceiveMessage (dead-letter queue) → reopen each message's ``failed`` run as ``queued`` →
SendMessageBatch (workflow queue) → DeleteMessageBatch (dead-letter queue). The run is reopened BEFORE its
message is sent, so no delivery can find it still ``failed`` and drop it. A crash between sending and
deleting leaves a copy in the dead-letter queue; redriving that copy later sends a duplicate, which is
harmless: it names the same run (run ids are derived from the event or stored with the invocation), and a
delivery of a finished or busy run is turned away. (SQS's own StartMessageMoveTask would not reopen runs.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from polos.aws import observability, settings
from polos.aws.attempts import receive_limit
from polos.payloads import utc_iso
from polos.publish.events import EventRef
from polos.publish.fanout import send_bodies
from polos.publish.messages import WorkflowMessage
from polos.runtime import batches, control
from polos.runtime.journal import Journal
from polos.runtime.records import ErrorInfo
from polos.runtime.runs import single_run_id

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from polos.definition import Workflow

logger = observability.logger

EXHAUSTED_ERROR_TYPE = "DeliveryExhausted"
RECEIVE_MAX = 10  # ReceiveMessage's MaxNumberOfMessages
# Listing hides the messages it reads for this long, then shows them again at once.
LIST_HIDE_SECONDS = 30
# Redrive hides each message while it is moved; a crash midway shows it again after this.
MOVE_HIDE_SECONDS = 60
MAX_MOVED_PER_CALL = 1000  # bounds one redrive call (an API request has 29 s); call again while moved > 0


def attempts_allowed(workflow: Workflow) -> int:
    """The workflow's ``max_attempts``: its own (``@workflow(max_attempts=N)``) or the deployment's."""
    return workflow.max_attempts or settings.get_settings().max_attempts


def last_receives(received: int, workflow: Workflow) -> tuple[bool, bool]:
    """``(final, exhausted)`` of a message received ``received`` times: its last executing receive (a
    failure fails the run), and its very last one (it runs nothing: :func:`settle_exhausted`)."""
    limit = receive_limit(attempts_allowed(workflow))
    return received >= limit - 1, received >= limit


def exhausted_error(what: str) -> ErrorInfo:
    return ErrorInfo(
        type=EXHAUSTED_ERROR_TYPE,
        message=f"{what} ended without an outcome (Lambda timeout, out of memory or a crash); redrive its "
        "dead letter to run it again",
    )


def dead_letter_if_marked(message: WorkflowMessage, body: str, batch: bool, journal: Journal) -> bool:
    """Send a message whose run failed for want of attempts (``dead_letter``) to the workflow's dead-letter
    queue; ``True`` when sent (the caller then deletes it). One GetItem (a claims read first for a batch
    event), and only for a record the worker leaves anyway."""
    run_id = run_of(message, batch)
    if run_id is None:
        return False
    if not journal.dead_letter_marked(run_id):
        return False
    send_bodies(settings.get_settings().dead_letter_queue_url(message.workflow_id), [(body, 0)])
    logger.error(
        "run failed: its attempts are spent; message moved to the dead-letter queue",
        extra={"run_id": run_id, "workflow_id": message.workflow_id},
    )
    return True


def run_of(message: WorkflowMessage, batch: bool) -> str | None:
    """The run a message belongs to; ``None`` for an event of a batch workflow no batch run has claimed."""
    if not batch or message.event is None:
        return single_run_id(message)
    event = message.event
    ref = EventRef(event.topic, event.sequence_id, event.id)
    return batches.read_claims(message.workflow_id, [ref]).get(ref)


def settle_exhausted(message: WorkflowMessage, batch: bool, journal: Journal) -> bool:
    """The last receive of a message: fail its run if it was left unfinished; ``True`` to acknowledge.

    A completed, cancelled or healthy ``waiting`` run, or an invoked run that does not exist, needs nothing
    more: acknowledged. Otherwise the message is left for the dead-letter queue (a failed run can be
    redriven). A finished run's end reaches its parent (again: idempotent).
    """
    run_id = run_of(message, batch)
    if run_id is None:
        return False
    run = journal.fail_exhausted(run_id, exhausted_error("the message's last executing receive"))
    if run is None:
        return message.kind == "invoke"
    if run.status == "failed" and run.error is not None and run.error.type == EXHAUSTED_ERROR_TYPE:
        logger.error(
            "run failed: its deliveries are exhausted; message left for the dead-letter queue",
            extra={"run_id": run_id, "workflow_id": message.workflow_id},
        )
    control.end_again(run, journal)
    return run.status in ("completed", "cancelled", "waiting")


# --- the dead-letter queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """What the dead-letter listing shows of one message (never the event's data: answers stay small)."""

    message_id: str
    body: str
    sent_at: str | None

    def view(self, batch: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {"message_id": self.message_id, "sent_at": self.sent_at}
        try:
            message = WorkflowMessage.from_json(self.body)
        except ValueError as exc:
            return {**shown, "error": str(exc)}
        event = message.event
        shown["kind"] = message.kind
        shown["run_id"] = run_of(message, batch)
        shown["event"] = (
            None
            if event is None
            else {"id": event.id, "topic": event.topic, "sequence_id": event.sequence_id}
        )
        return shown


def _visible(queue_url: str) -> int:
    attributes = settings.sqs().get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def _receive(queue_url: str, want: int, hide_seconds: int) -> list[MessageTypeDef]:
    """Up to ``want`` messages, hidden for ``hide_seconds``; a short long-poll (1 s) so that SQS looks at
    every server (a 0 s poll samples a few and may answer empty while messages wait)."""
    answer = settings.sqs().receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=min(RECEIVE_MAX, want),
        VisibilityTimeout=hide_seconds,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["SentTimestamp"],
    )
    return answer.get("Messages", [])


def _batches(queue_url: str, limit: int, hide_seconds: int) -> list[list[MessageTypeDef]]:
    """Receive rounds until ``limit`` messages, or as many as the queue showed at the start, are in hand."""
    expected = min(limit, _visible(queue_url))
    rounds: list[list[MessageTypeDef]] = []
    seen: set[str] = set()
    while len(seen) < expected:
        got = [
            m for m in _receive(queue_url, expected - len(seen), hide_seconds) if m["MessageId"] not in seen
        ]
        if not got:
            break
        seen.update(m["MessageId"] for m in got)
        rounds.append(got)
    return rounds


def _entries(messages: list[MessageTypeDef]) -> list[dict[str, Any]]:
    return [{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]


def list_dead_letters(workflow_id: str, batch: bool, limit: int) -> dict[str, Any]:
    """Up to ``limit`` of a workflow's dead letters (oldest first as SQS hands them out) and their count."""
    queue_url = settings.get_settings().dead_letter_queue_url(workflow_id)
    letters: list[DeadLetter] = []
    for messages in _batches(queue_url, limit, LIST_HIDE_SECONDS):
        letters.extend(
            DeadLetter(m["MessageId"], m["Body"], _sent_at(m.get("Attributes", {}).get("SentTimestamp")))
            for m in messages
        )
        settings.sqs().change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[{**entry, "VisibilityTimeout": 0} for entry in _entries(messages)],  # type: ignore[typeddict-item]
        )
    letters.sort(key=lambda letter: letter.sent_at or "")
    return {
        "workflow_id": workflow_id,
        "dead_letters": [letter.view(batch) for letter in letters],
        "approximate_count": _visible(queue_url),
    }


def _sent_at(millis: str | None) -> str | None:
    if not millis:
        return None
    return utc_iso(datetime.fromtimestamp(int(millis) / 1000, UTC))


def redrive(workflow_id: str, batch: bool, limit: int = MAX_MOVED_PER_CALL) -> int:
    """Move a workflow's dead letters back to its queue, reopening their failed runs; how many moved."""
    config = settings.get_settings()
    dead_letter_url, queue_url = config.dead_letter_queue_url(workflow_id), config.queue_url(workflow_id)
    journal = Journal()
    moved = 0
    for messages in _batches(dead_letter_url, limit, MOVE_HIDE_SECONDS):
        for m in messages:
            reopen_run(m["Body"], batch, journal)
        send_bodies(queue_url, [(m["Body"], 0) for m in messages])
        answer = settings.sqs().delete_message_batch(QueueUrl=dead_letter_url, Entries=_entries(messages))  # type: ignore[arg-type]
        for failure in answer.get("Failed", []):
            # The copy comes back to the dead-letter queue; redriving it again sends a harmless duplicate.
            logger.warning("dead letter sent but not deleted", extra={"failure": failure})
        moved += len(messages)
    logger.info("dead letters redriven", extra={"workflow_id": workflow_id, "moved": moved})
    return moved


def reopen_run(body: str, batch: bool, journal: Journal) -> None:
    """Make the failed run of a dead letter ``queued`` again, so its redriven message runs it."""
    try:
        message = WorkflowMessage.from_json(body)
    except ValueError:
        return  # not ours: moved back as it is; the worker dead-letters it again
    run_id = run_of(message, batch)
    if run_id is not None and journal.reopen(run_id):
        logger.info("run reopened for redrive", extra={"run_id": run_id, "workflow_id": message.workflow_id})

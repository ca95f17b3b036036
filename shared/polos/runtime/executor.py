"""One attempt of one run: take the lease, replay the journal, run the handler, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos import serde
from polos.aws import observability, overload, settings
from polos.context import WorkflowContext
from polos.errors import NonRetryableError, RunLeaseLostError
from polos.publish.events import EventRef
from polos.runtime import clock, control, steps, timers
from polos.runtime.journal import Acquired, Item, Journal
from polos.runtime.records import ErrorInfo, LoadedRun, RunRecord, RunStatus, StepRecord, TriggerType
from polos.runtime.runs import stored_payload
from polos.runtime.steps import StepRunner, lease_margin
from polos.runtime.waits import RunCancelled, RunSuspended, WaitingFor, is_due

if TYPE_CHECKING:
    from collections.abc import Callable

    from polos.definition import Workflow

logger = Logger(service="polos")

# completed / failed: the run is finished for good. exhausted: it failed on its last delivery with an error
# that a later delivery might not hit (its message goes to the dead-letter queue, to be redriven). retry /
# busy: SQS delivers it again. finished: it was finished before. missing: an invoked run that the API never
# stored (or removed after a failed request): nothing to run. waiting: the run waits (or still waits) for a
# wake-up; cancelled: the run was cancelled. Both acknowledge the message.
# claimed: a batch run claimed the event of this single-event delivery (``claimed_by``): that run ends it.
# throttled: our own AWS calls were throttled or timed out (not the workflow's failure, see
# ``polos.aws.overload``): the run is left as it was, without an error, for a later delivery.
Outcome = Literal[
    "completed",
    "failed",
    "exhausted",
    "retry",
    "busy",
    "finished",
    "missing",
    "waiting",
    "cancelled",
    "claimed",
    "throttled",
]
_NO_PAYLOAD: Any = object()
_T = TypeVar("_T")


@dataclass
class Attempt:
    """What a delivery asks for: run ``run_id`` of ``workflow`` once more."""

    workflow: Workflow
    run_id: str
    trigger_type: TriggerType
    event_refs: list[EventRef] = field(default_factory=list)
    # The handler's input before validation; invoked runs leave it out and read it from the run item.
    payload: Any = _NO_PAYLOAD
    # True when no further delivery will come (the queue's max receive count is reached).
    final: bool = False
    # Items of the run's partition when the caller already queried them (batch runs do).
    preloaded: list[Item] | None = None
    # Set when the caller created the run already leased to this owner (a new batch run, created with its
    # membership in one transaction): the attempt uses that lease instead of acquiring one.
    lease_owner: str | None = None
    # Set when the delivery is a wake-up of the run waiting in this step (a ``resume`` message).
    resume_step: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    """How the attempt ended. ``retry``, ``busy`` and ``exhausted`` leave the message on the queue;
    ``waiting`` and ``cancelled`` acknowledge it like ``completed`` does."""

    outcome: Outcome
    run: RunRecord | None = None
    error: ErrorInfo | None = None
    result: Any = None
    claimed_by: str | None = None


async def execute(attempt: Attempt, journal: Journal | None = None) -> AttemptResult:
    """Drive one attempt of a run to completed, failed or retry-later (see :class:`AttemptResult`).

    Lease first: unless the caller read the run's partition already (batch runs) or the delivery wakes a
    waiting run, the attempt starts with the lease's conditional write, whose answer says whether an earlier
    attempt may have journaled steps (``attempts`` > 1): only then is the journal read (one Query). Steps
    are written only by an attempt that holds the lease, and every acquire counts one attempt, so a run
    taken for its first attempt has none: invoked and child runs (stored by the API with 0 attempts),
    scheduled and event runs (created by this write). A run that waits is left to its wake-up.
    """
    journal = journal or Journal()
    wf = attempt.workflow
    log: dict[str, Any] = {"run_id": attempt.run_id, "workflow_id": wf.id}  # the events: `bind_run`
    items = attempt.preloaded
    lease_first = items is None and attempt.resume_step is None
    loaded: LoadedRun | None = None
    if not lease_first:
        if items is None:
            items = await asyncio.to_thread(journal.query_partition, attempt.run_id)
        loaded = Journal.decode_partition(items)
        if loaded is None and attempt.resume_step is not None:
            logger.warning("wake-up of a run that does not exist; acknowledged", extra=log)
            return AttemptResult("finished")
        if loaded is not None and loaded.run.finished:
            return await _already_finished(journal, loaded.run, log)
        if loaded is not None and loaded.run.waiting_for_json is not None and loaded.run.status == "waiting":
            waiting = WaitingFor.from_json(loaded.run.waiting_for_json)
            step = next((step for step in loaded.steps if step.key == waiting.step), None)
            if not is_due(waiting, step, clock.now()):
                if attempt.resume_step == waiting.step:  # woken early (clock skew): the same wake-up again
                    await asyncio.to_thread(timers.arm, wf.id, attempt.run_id, waiting)
                logger.info("run still waiting; delivery acknowledged", extra={**log, "until": waiting.until})
                return AttemptResult("waiting", loaded.run)
    lease_seconds = settings.get_settings().lease_seconds
    given_owner = attempt.lease_owner
    if given_owner is not None and loaded is not None and loaded.run.lease_owner == given_owner:
        owner, run = given_owner, loaded.run
    else:
        owner = uuid.uuid4().hex
        taken = await asyncio.to_thread(
            lambda: journal.acquire(
                run_id=attempt.run_id,
                workflow_id=wf.id,
                trigger_type=attempt.trigger_type,
                event_refs=attempt.event_refs if attempt.trigger_type == "event" else [],
                owner=owner,
                lease_seconds=lease_seconds,
                payload_json=json.dumps(attempt.payload) if attempt.trigger_type == "schedule" else None,
                # An invoked run exists before its message is sent: one that does not is never created here
                # (a message whose request failed must not run with no payload).
                create=attempt.trigger_type != "invoke",
                # A waiting run is taken by its wake-up only (a duplicate of its first message acknowledges).
                wake=not lease_first,
            )
        )
        if not isinstance(taken, Acquired):
            if taken.outcome == "finished" and taken.run is not None:
                return await _already_finished(journal, taken.run, log)
            if taken.outcome == "claimed":
                return AttemptResult("claimed", claimed_by=taken.claimed_by)
            logger.info(f"run is {taken.outcome}; delivery done with or left for later", extra=log)
            return AttemptResult(taken.outcome, taken.run)
        run = taken.run
        if lease_first:
            if run.attempts > 1:  # an earlier attempt may have journaled steps: read them (one Query)
                items = await _releasing(journal, run, owner, lambda: journal.query_partition(run.run_id))
                loaded = Journal.decode_partition(items)
            else:
                items = []
        elif run.attempts != (loaded.run.attempts if loaded is not None else 0) + 1:
            # Another attempt held the lease between our read and our acquire and may have journaled steps:
            # read again (only in this race), so no journaled step runs twice.
            loaded = await _releasing(journal, run, owner, lambda: journal.load(run.run_id))
    log["attempt"] = run.attempts
    logger.debug("run attempt started", extra=log)  # one INFO line per run: its outcome
    runner = StepRunner(
        run_id=run.run_id,
        journal=journal,
        steps=loaded.steps if loaded is not None else [],
        lease_until=run.lease_until or 0.0,
        lease_margin=lease_margin(lease_seconds),
        lease_owner=owner,
        workflow_id=wf.id,
    )
    if run.cancel_requested:  # asked for while no attempt ran (a crashed one): ends here, no step called
        return await _cancelled(journal, run, owner, log)
    ctx = WorkflowContext(
        workflow_id=wf.id,
        run_id=run.run_id,
        attempt=run.attempts,
        created_at=datetime.fromisoformat(run.created_at),
        step=runner,
    )
    raw = attempt.payload
    if raw is _NO_PAYLOAD:  # an invocation, or a wake-up: the input is stored with the run
        raw = await _releasing(journal, run, owner, lambda: stored_payload(run, items or []))
    try:
        with overload.watch() as throttles:
            result = await wf(ctx, wf.build_payload(raw))
        if throttles:  # one of our AWS calls failed and the workflow's code went on regardless
            raise throttles[0]
        text = serde.to_json(result, what=f"result of workflow {wf.id!r}")
    except RunSuspended as suspended:
        return await _suspend(journal, run, owner, suspended.waiting, log, runner.take_pending())
    except RunCancelled:
        return await _cancelled(journal, run, owner, log, runner.take_pending())
    except RunLeaseLostError as exc:
        logger.warning("attempt stopped: lease lost", extra={**log, "error": str(exc)})
        return AttemptResult("busy", run)
    except overload.InfrastructureThrottled as exc:
        return await _infrastructure_failure(journal, run, owner, exc, log, runner)
    except Exception as exc:
        if throttles:  # the workflow's error followed a failure of ours: that one is the cause
            return await _infrastructure_failure(journal, run, owner, throttles[0], log, runner)
        error = ErrorInfo.of(exc)
        retryable = not isinstance(exc, NonRetryableError)
        final = attempt.final or not retryable
        logger.exception(  # the traceback goes to the log only, never to the run item
            "run attempt failed" + ("; run failed" if final else "; SQS will deliver it again"),
            extra={**log, "error_type": error.type, "error": error.message},
        )
        ended: Literal["failed", "queued"] = "failed" if final else "queued"
        if not await _finish(journal, run, owner, ended, log, error=error, step=runner.take_pending()):
            return AttemptResult("busy", run)
        if not final and run.status != "failed":  # failed anyway: its outcome could not be stored
            return AttemptResult("retry", run, error)
        return AttemptResult("exhausted" if retryable and final else "failed", run, run.error)
    if not await _finish(journal, run, owner, "completed", log, result_json=text, step=runner.take_pending()):
        return AttemptResult("busy", run)
    if run.status == "failed":  # the result could not be stored (see ``_finish``)
        return AttemptResult("failed", run, run.error)
    logger.info("run completed", extra=log)
    return AttemptResult("completed", run, result=json.loads(text))


async def _releasing(journal: Journal, run: RunRecord, owner: str, read: Callable[[], _T]) -> _T:
    """A read of the attempt before its workflow runs; when it meets overload the lease is given back
    first (if DynamoDB takes that write), so the deferred delivery need not wait for it to lapse."""
    try:
        return await asyncio.to_thread(read)
    except overload.InfrastructureThrottled:
        with contextlib.suppress(overload.InfrastructureThrottled, RunLeaseLostError):
            await asyncio.to_thread(
                journal.finish, run.run_id, owner, "queued", kept_steps_bytes=run.kept_steps_bytes
            )
        raise


async def _infrastructure_failure(
    journal: Journal,
    run: RunRecord,
    owner: str,
    failure: overload.InfrastructureThrottled,
    log: dict[str, Any],
    runner: StepRunner,
) -> AttemptResult:
    """Our own AWS call was throttled or timed out: no error of the run or of a step. The run goes back to
    ``queued`` (lease released, its completed steps kept) if DynamoDB takes that write now, else its lease
    lapses; the worker defers the message, so the run's attempts are not spent."""
    logger.warning(
        "attempt stopped: AWS overloaded; the delivery is deferred",
        extra={**log, "operation": failure.operation, "reason": failure.reason},
    )
    observability.count("InfrastructureThrottled")
    try:
        await _finish(journal, run, owner, "queued", log, step=runner.take_pending())
    except overload.InfrastructureThrottled:
        logger.info("lease not released (AWS overloaded); it lapses", extra=log)
    return AttemptResult("throttled", run)


async def _already_finished(journal: Journal, run: RunRecord, log: dict[str, Any]) -> AttemptResult:
    logger.info("run already finished; delivery acknowledged", extra={**log, "status": run.status})
    if run.parent is not None:  # its end may not have reached its parent (a crash in between)
        await asyncio.to_thread(control.report_end, run, journal=journal)
    return AttemptResult("finished", run)


async def _cancelled(
    journal: Journal, run: RunRecord, owner: str, log: dict[str, Any], step: StepRecord | None = None
) -> AttemptResult:
    """End the attempt with the run ``cancelled`` (a cancel was asked for while it ran)."""
    if not await _finish(journal, run, owner, "cancelled", log, step=step):
        return AttemptResult("busy", run)
    logger.info("run cancelled at a step boundary", extra=log)
    return AttemptResult("cancelled", run)


async def _suspend(
    journal: Journal,
    run: RunRecord,
    owner: str,
    waiting: WaitingFor,
    log: dict[str, Any],
    step: StepRecord | None = None,
) -> AttemptResult:
    """End the attempt with the run ``waiting``: its wake-up is set first, so none is ever lost; a run
    kept for its retention period is kept past its wake-up too (a wait may be longer than the retention)."""
    if waiting.until is not None:
        await asyncio.to_thread(journal.keep_until, run, waiting.until)
    await asyncio.to_thread(timers.arm, run.workflow_id, run.run_id, waiting)
    if not await _finish(journal, run, owner, "waiting", log, waiting_for=waiting, step=step):
        return AttemptResult("busy", run)
    logger.info("run waiting", extra={**log, "waiting_for": waiting.view()})
    observability.count("WaitsStarted")
    return AttemptResult("waiting", run)


async def _finish(
    journal: Journal,
    run: RunRecord,
    owner: str,
    status: Literal["completed", "failed", "queued", "waiting", "cancelled"],
    log: dict[str, Any],
    *,
    result_json: str | None = None,
    error: ErrorInfo | None = None,
    waiting_for: WaitingFor | None = None,
    step: StepRecord | None = None,
) -> bool:
    """Record the attempt's outcome (with ``step``, its last completed step not journaled yet) and mirror
    it on ``run``; ``False`` when the lease was lost meanwhile.

    An outcome DynamoDB refuses (``ValidationException``: too large, whatever the budget missed) fails
    the run with an error saying so, rather than leaving it ``running`` to be executed again and again;
    the step is then journaled in its own item, so the failed run still shows it.
    """
    stored = len((run.payload_json or "").encode("utf-8", "surrogatepass"))
    waiting_json = waiting_for.to_json() if waiting_for is not None else None

    def write(
        status: RunStatus, result_json: str | None, error: ErrorInfo | None, step: StepRecord | None
    ) -> bool:
        return journal.finish(
            run.run_id,
            owner,
            status,
            result_json=result_json,
            error=error,
            payload_bytes=stored,
            waiting_for_json=waiting_json,
            step=step,
            kept_steps_bytes=run.kept_steps_bytes,
        )

    cancel_asked = False
    try:
        try:
            cancel_asked = await asyncio.to_thread(write, status, result_json, error, step)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            logger.exception("attempt outcome refused by DynamoDB; run failed", extra=log)
            status, result_json = "failed", None
            error = ErrorInfo(
                "RunOutcomeTooLargeError",
                f"run {run.run_id}: its {'result' if error is None else 'error'} could not be stored "
                f"({ErrorInfo.of(exc).message})",
            )
            if step is not None:
                await asyncio.to_thread(lambda: journal.record_step(run.run_id, step, fence_owner=owner))
            await asyncio.to_thread(write, status, None, error, None)
    except RunLeaseLostError as exc:
        logger.warning("attempt outcome dropped: lease lost", extra={**log, "error": str(exc)})
        return False
    if step is not None:
        steps.journaled(run.run_id, step.key)
    run.status, run.result_json, run.error = status, result_json, error
    run.lease_owner = run.lease_until = None
    run.waiting_for_json = waiting_json
    if cancel_asked and status in ("queued", "waiting"):  # asked for during the attempt: cancelled now
        cancelled = await asyncio.to_thread(control.cancel, run.run_id, journal)
        if cancelled is not None:
            run.status = cancelled[0].status
    elif run.finished and run.parent is not None:
        await asyncio.to_thread(control.report_end, run, journal=journal)
    return True

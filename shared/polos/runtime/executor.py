"""One attempt of one run: take the lease, replay the journal, run the handler, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos import serde, state
from polos.aws import observability, overload, settings
from polos.aws.item_size import item_size
from polos.context import WorkflowContext
from polos.errors import NonRetryableError, RunLeaseLostError
from polos.publish import waiters
from polos.publish.events import EventRef
from polos.runtime import attempts, clock, control, dead_letters, deadline, retention, slots, steps, timers
from polos.runtime.journal import Acquired, Item, Journal, kept_step_bytes, now_iso
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
    # The steps the delivery's ``resume`` messages wake the run in (the run is read before it is taken).
    wakes: frozenset[str] = frozenset()


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
    lease_first = items is None and not attempt.wakes
    loaded: LoadedRun | None = None
    if not lease_first:
        if items is None:
            items = await asyncio.to_thread(journal.query_partition, attempt.run_id)
        loaded = Journal.decode_partition(items)
        if loaded is None and attempt.wakes and attempt.trigger_type == "invoke":  # never created here
            logger.warning("wake-up of a run that does not exist; acknowledged", extra=log)
            return AttemptResult("finished")
        if loaded is not None and loaded.run.finished:
            return await _already_finished(journal, loaded.run, log)
        if loaded is not None and loaded.run.waiting_for_json is not None and loaded.run.status == "waiting":
            waiting = WaitingFor.from_json(loaded.run.waiting_for_json)
            step = next((step for step in loaded.steps if step.key == waiting.step), None)
            if not is_due(waiting, step, clock.now()):
                if waiting.step in attempt.wakes:  # woken early (clock skew): the same wake-up again
                    await asyncio.to_thread(timers.arm, wf.id, attempt.run_id, waiting)
                logger.info("run still waiting; delivery acknowledged", extra={**log, "until": waiting.until})
                return await _still_waiting(journal, loaded.run, log)
            if retention.keep_due(waiting, step, clock.now()):  # woken to keep what it reads: no replay
                await asyncio.to_thread(retention.renew, journal, loaded.run, waiting)
                logger.info("waiting run kept past the retention", extra=log)
                return await _still_waiting(journal, loaded.run, log)
    lease_seconds = settings.get_settings().lease_seconds
    allowed = dead_letters.attempts_allowed(wf)
    given_owner = attempt.lease_owner
    if given_owner is not None and loaded is not None and loaded.run.lease_owner == given_owner:
        owner, run = given_owner, loaded.run
    else:
        owner = uuid.uuid4().hex
        taken = await asyncio.to_thread(
            lambda: journal.acquire(
                run_id=attempt.run_id,
                workflow_id=wf.id,
                # A wake-up's message (``invoke``) is not the trigger of the run it wakes: the run's own
                # names its workflow attribute (a single-event run stays out of the runs index).
                trigger_type=loaded.run.trigger_type if loaded is not None else attempt.trigger_type,
                event_refs=attempt.event_refs if attempt.trigger_type == "event" else [],
                owner=owner,
                lease_seconds=lease_seconds,
                payload_json=json.dumps(attempt.payload) if attempt.trigger_type == "schedule" else None,
                # An invoked run exists before its message is sent: one that does not is never created here
                # (a message whose request failed must not run with no payload).
                create=attempt.trigger_type != "invoke",
                # A waiting run is taken by its wake-up only (a duplicate of its first message acknowledges).
                wake=not lease_first,
                max_attempts=allowed,
                created_at=attempt.payload.get("created_at") if attempt.trigger_type == "event" else None,
            )
        )
        if not isinstance(taken, Acquired):
            if taken.outcome == "finished" and taken.run is not None:
                return await _already_finished(journal, taken.run, log)
            if taken.outcome == "claimed":
                return AttemptResult("claimed", claimed_by=taken.claimed_by)
            if taken.outcome == "waiting" and taken.run is not None:
                return await _still_waiting(journal, taken.run, log)
            if taken.outcome == "spent":
                return await _out_of_attempts(journal, attempt.run_id, log, allowed)
            logger.info(f"run is {taken.outcome}; delivery done with or left for later", extra=log)
            return AttemptResult(taken.outcome, taken.run)
        run = taken.run
        if lease_first:
            # An earlier attempt may have journaled steps, or a rerun copied its source's: read them.
            if run.attempts > 1 or run.from_step is not None:
                items = await _releasing(journal, run, owner, lambda: journal.query_partition(run.run_id))
                loaded = Journal.decode_partition(items)
            else:
                items = []
        elif run.attempts != (loaded.run.attempts if loaded is not None else 0) + 1:
            # Another attempt held the lease between our read and our acquire and may have journaled steps:
            # read again (only in this race), so no journaled step runs twice.
            loaded = await _releasing(journal, run, owner, lambda: journal.load(run.run_id))
    log["attempt"] = run.attempts
    logger.debug("run attempt started", extra=log)  # a run's completion is DEBUG too; failures WARNING+
    runner = StepRunner(
        run_id=run.run_id,
        journal=journal,
        steps=loaded.steps if loaded is not None else [],
        lease_until=run.lease_until or 0.0,
        lease_margin=lease_margin(lease_seconds),
        lease_owner=owner,
        workflow_id=wf.id,
        suspended=run.waiting_for_json,
        workflow=wf,
        run_item_bytes=run.item_bytes,
    )
    if run.cancel_requested:  # asked for while no attempt ran (a crashed one): ends here, no step called
        return await _cancelled(journal, run, owner, log)
    ends_at = deadline.deadline(run, wf)
    if deadline.passed(ends_at):  # woken by its deadline, or delivered late: nothing runs
        return await _timed_out(journal, run, owner, log, wf)
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
    spec = slots.spec_for(wf, run, raw)
    admitted = await _releasing(journal, run, owner, lambda: slots.admit(spec, run, _slot_queued(run)))
    if admitted is None and spec is not None:
        return await _queued_for_slot(journal, run, owner, spec, log)
    held = admitted if isinstance(admitted, slots.Held) else None
    run.slot_json = slots.encode(held)
    try:
        outcome = await _run_handler(attempt, journal, run, owner, runner, ctx, raw, log, allowed, ends_at)
    except Exception:
        await asyncio.to_thread(slots.release, held, run.run_id)
        raise
    await asyncio.to_thread(slots.release, held, run.run_id)  # the outcome is stored: the slot goes back
    return outcome


def _slot_queued(run: RunRecord) -> bool:
    """Whether the run waited in a queue's backlog before this attempt (its waiter is to be removed)."""
    return (
        run.waiting_for_json is not None and WaitingFor.from_json(run.waiting_for_json).kind == "concurrency"
    )


async def _queued_for_slot(
    journal: Journal, run: RunRecord, owner: str, spec: slots.SlotSpec, log: dict[str, Any]
) -> AttemptResult:
    """Park the run ``queued`` for a slot (its waiter is stored): nothing executed, nothing counted; then
    look once more for a slot freed meanwhile (its hand-on may have found the run still held)."""
    waiting = WaitingFor(step="", kind="concurrency", queue=spec.queue, key=spec.key)
    run.slot_json = slots.encode(spec)
    if not await _finish(
        journal, run, owner, "queued", log, waiting_for=waiting, uncounted=True, unexecuted=True
    ):
        return AttemptResult("busy", run)
    await asyncio.to_thread(slots.recheck, spec)
    return AttemptResult("waiting", run)


async def _run_handler(
    attempt: Attempt,
    journal: Journal,
    run: RunRecord,
    owner: str,
    runner: StepRunner,
    ctx: WorkflowContext,
    raw: Any,
    log: dict[str, Any],
    allowed: int,
    ends_at: float | None,
) -> AttemptResult:
    """The handler's run in this attempt (cut at the run's deadline ``ends_at``), and its outcome stored."""
    wf = attempt.workflow
    saved: str | None = None
    try:
        with overload.watch() as throttles:
            initial = json.loads(run.initial_state_json) if run.initial_state_json else None
            ctx.state = state.initial(wf.id, wf.state_schema, initial)  # every attempt starts from it
            try:
                result = await deadline.within(ends_at, wf(ctx, wf.build_payload(raw)))
            finally:  # steps awaited together that still run: journaled (or stopped) before the outcome
                await runner.settle()
        if throttles:  # one of our AWS calls failed and the workflow's code went on regardless
            raise throttles[0]
        text = serde.to_json(result, what=f"result of workflow {wf.id!r}")
        saved = _saved_state(ctx, log)
    except RunSuspended as suspended:
        waiting = replace(suspended.waiting, deadline=ends_at)
        pending, saved = runner.take_pending(), _saved_state(ctx, log)
        return await _suspend(journal, run, owner, waiting, log, pending, raw, saved)
    except RunCancelled:
        return await _cancelled(journal, run, owner, log, runner.take_pending(), _saved_state(ctx, log))
    except deadline.RunTimedOut:
        return await _timed_out(journal, run, owner, log, wf, runner.take_pending(), _saved_state(ctx, log))
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
        final = attempt.final or not retryable or run.message_attempts >= allowed
        logger.exception(  # the traceback goes to the log only, never to the run item
            "run attempt failed" + ("; run failed" if final else "; SQS will deliver it again"),
            extra={**log, "error_type": error.type, "error": error.message},
        )
        ended: Literal["failed", "queued"] = "failed" if final else "queued"
        spent = retryable and final  # the message goes to the dead-letter queue
        pending, saved = runner.take_pending(), _saved_state(ctx, log)
        with contextlib.suppress(overload.InfrastructureThrottled):  # the run's outcome matters more
            await asyncio.to_thread(
                journal.put_traceback, run.run_id, run.attempts, attempts.bounded_traceback(exc)
            )
        if not await _finish(
            journal, run, owner, ended, log, error=error, step=pending, dead_letter=spent, state_json=saved
        ):
            return AttemptResult("busy", run)
        if not final and run.status != "failed":  # failed anyway: its outcome could not be stored
            return AttemptResult("retry", run, error)
        return AttemptResult("exhausted" if retryable and final else "failed", run, run.error)
    pending = runner.take_pending()
    if not await _finish(
        journal, run, owner, "completed", log, result_json=text, step=pending, state_json=saved
    ):
        return AttemptResult("busy", run)
    if run.status == "failed":  # the result could not be stored (see ``_finish``)
        return AttemptResult("failed", run, run.error)
    logger.debug("run completed", extra=log)  # not at INFO: a line per run is billed (issue 26)
    return AttemptResult("completed", run, result=json.loads(text))


async def _releasing(journal: Journal, run: RunRecord, owner: str, read: Callable[[], _T]) -> _T:
    """A read of the attempt before its workflow runs; when it meets overload the lease is given back
    first (if DynamoDB takes that write), with the execution it counted, so the deferred delivery need not
    wait for it to lapse and spends no attempt."""
    try:
        return await asyncio.to_thread(read)
    except overload.InfrastructureThrottled:
        with contextlib.suppress(overload.InfrastructureThrottled, RunLeaseLostError):
            await asyncio.to_thread(
                lambda: journal.finish(
                    run.run_id,
                    owner,
                    "queued",
                    kept_steps_bytes=run.kept_steps_bytes,
                    uncounted=True,
                    attempts=run.attempts,
                )
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
        await _finish(journal, run, owner, "queued", log, step=runner.take_pending(), uncounted=True)
    except overload.InfrastructureThrottled:
        logger.info("lease not released (AWS overloaded); it lapses", extra=log)
    return AttemptResult("throttled", run)


async def _already_finished(journal: Journal, run: RunRecord, log: dict[str, Any]) -> AttemptResult:
    logger.info("run already finished; delivery acknowledged", extra={**log, "status": run.status})
    # What follows its end may have been cut short by a crash: a cancel's whole effect, the parent's report.
    await asyncio.to_thread(control.end_again, run, journal)  # its slot's release and hand-on too
    if run.dead_letter:  # failed for want of attempts: its message still belongs in the dead-letter queue
        return AttemptResult("exhausted", run, run.error)
    return AttemptResult("finished", run)


async def _still_waiting(journal: Journal, run: RunRecord, log: dict[str, Any]) -> AttemptResult:
    """A waiting run this delivery does not wake. A cancel asked for while its last attempt ran is applied
    now when that attempt could not (it died after parking the run, or lost the answer of that write)."""
    await asyncio.to_thread(slots.settle, run)  # the slot it gave back at its wait, handed on (again)
    if run.cancel_requested:
        cancelled = await asyncio.to_thread(control.cancel, run.run_id, journal)
        if cancelled is not None and cancelled[0].status == "cancelled":
            logger.info("waiting run cancelled: the cancel was asked for while it ran", extra=log)
            return AttemptResult("cancelled", cancelled[0])
    return AttemptResult("waiting", run)


async def _out_of_attempts(journal: Journal, run_id: str, log: dict[str, Any], allowed: int) -> AttemptResult:
    """Fail the run without executing it (nor counting an attempt): the ``allowed`` executions of this
    message all died without an outcome."""
    error = dead_letters.exhausted_error(f"each of the {allowed} executions max_attempts allows")
    run = await asyncio.to_thread(lambda: journal.fail_exhausted(run_id, error, dead_letter=True))
    if run is None or not run.dead_letter:  # taken by a live attempt meanwhile, or finished
        return AttemptResult("busy", run)
    await asyncio.to_thread(control.end_again, run, journal)  # a parent waiting for it hears of its end
    logger.error("run failed: its executions are spent; nothing executed", extra=log)
    return AttemptResult("exhausted", run, run.error)


def _saved_state(ctx: WorkflowContext, log: dict[str, Any]) -> str | None:
    """``ctx.state`` as saved with the outcome (``None`` without a ``state_schema``, or when it cannot be
    saved: then the last saved state stays and the log says why)."""
    if ctx.state is None:
        return None
    try:
        return state.dump(ctx.state)
    except state.StateError as exc:
        logger.error("ctx.state not saved", extra={**log, "error": str(exc)})
        return None


async def _cancelled(
    journal: Journal,
    run: RunRecord,
    owner: str,
    log: dict[str, Any],
    step: StepRecord | None = None,
    state_json: str | None = None,
) -> AttemptResult:
    """End the attempt with the run ``cancelled`` (a cancel was asked for while it ran)."""
    if not await _finish(journal, run, owner, "cancelled", log, step=step, state_json=state_json):
        return AttemptResult("busy", run)
    logger.info("run cancelled at a step boundary", extra=log)
    return AttemptResult("cancelled", run)


async def _timed_out(
    journal: Journal,
    run: RunRecord,
    owner: str,
    log: dict[str, Any],
    wf: Workflow,
    step: StepRecord | None = None,
    state_json: str | None = None,
) -> AttemptResult:
    """Fail the run at its deadline (``RunTimeout``). It keeps what it waited for, so that the wait is
    released and the child it waited for cancelled, now or (after a crash) by its next delivery."""
    error = deadline.error(run, wf)
    waited = WaitingFor.from_json(run.waiting_for_json) if run.waiting_for_json else None
    if not await _finish(
        journal, run, owner, "failed", log, error=error, waiting_for=waited, step=step, state_json=state_json
    ):
        return AttemptResult("busy", run)
    await asyncio.to_thread(control.release_wait, run, journal)
    logger.info("run failed: its run_timeout_seconds passed", extra=log)
    return AttemptResult("failed", run, error)


async def _suspend(
    journal: Journal,
    run: RunRecord,
    owner: str,
    waiting: WaitingFor,
    log: dict[str, Any],
    step: StepRecord | None = None,
    raw: Any = None,
    state_json: str | None = None,
) -> AttemptResult:
    """End the attempt with the run ``waiting``: what it reads when it wakes (its input ``raw``) is kept as
    long as it waits, then its wake-up is set, so none is ever lost (see ``polos.runtime.retention``).

    A completer (a resume, a matched event, a child's end) may complete the step while this attempt still
    holds the run: its wake-up, delivered meanwhile, found the run busy and comes back only after the
    visibility timeout. So once the run is ``waiting``, the step is read again (one GetItem) and a step
    completed meanwhile wakes the run now; a completion after that read finds the run ``waiting``."""
    kept = await asyncio.to_thread(retention.keep_waiting, journal, run, raw, waiting)
    waiting = kept.waiting
    await asyncio.to_thread(timers.arm, run.workflow_id, run.run_id, waiting)
    finished = await _finish(
        journal,
        run,
        owner,
        "waiting",
        log,
        waiting_for=waiting,
        step=step,
        kept_until=kept.kept_until,
        state_json=state_json,
    )
    if not finished:
        return AttemptResult("busy", run)
    if waiting.kind not in ("timer", "retry") and run.status == "waiting":
        completed = await asyncio.to_thread(journal.get_step, run.run_id, waiting.step)
        if completed is not None and completed.status != "waiting":
            await asyncio.to_thread(waiters.wake, run.workflow_id, run.run_id, waiting.step)
    logger.info("run waiting", extra={**log, "waiting_for": waiting.view()})
    observability.count("WaitsStarted")
    return AttemptResult("waiting", run)


def _outcome_size(
    result_json: str | None,
    error: ErrorInfo | None,
    state_json: str | None,
    waiting_json: str | None,
    step: StepRecord | None,
) -> int:
    """About what an outcome adds to its run item: its texts with their names, and its last step."""
    texts = {"result": result_json, "error": error.to_json() if error else None}
    texts |= {"state": state_json, "waiting_for": waiting_json}
    added = item_size({name: {"S": text} for name, text in texts.items() if text is not None})
    return added + (kept_step_bytes(step) if step is not None else 0)


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
    dead_letter: bool = False,
    kept_until: int | None = None,
    uncounted: bool = False,
    state_json: str | None = None,
    unexecuted: bool = False,
) -> bool:
    """Record the attempt's outcome (with ``step``, its last completed step not journaled yet) and mirror
    it on ``run``; ``False`` when the lease was lost meanwhile.

    An outcome DynamoDB refuses (``ValidationException``: too large, whatever the budget missed) fails
    the run with an error saying so, rather than leaving it ``running`` to be executed again and again;
    the step is then journaled in its own item, so the failed run still shows it.
    """
    kept_texts = (run.payload_json, run.initial_state_json, state_json or run.state_json)
    stored = sum(len((text or "").encode("utf-8", "surrogatepass")) for text in kept_texts)
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
            dead_letter=dead_letter,
            kept_until=kept_until,
            uncounted=uncounted,
            state_json=state_json,
            attempt=attempts.summary(run, status, error, uncounted, now_iso()),
            slot_json=run.slot_json,
            unexecuted=unexecuted,
            attempts=run.attempts,
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
    steps.saw_outcome(run.workflow_id, _outcome_size(result_json, error, state_json, waiting_json, step))
    if step is not None:
        steps.journaled(run.run_id, step.key)
    run.status, run.result_json, run.error = status, result_json, error
    run.lease_owner = run.lease_until = None
    run.waiting_for_json = waiting_json
    run.state_json = state_json or run.state_json
    if cancel_asked and status in ("queued", "waiting"):  # asked for during the attempt: cancelled now
        cancelled = await asyncio.to_thread(control.cancel, run.run_id, journal)
        if cancelled is not None:
            run.status = cancelled[0].status
    elif run.finished and run.parent is not None:
        await asyncio.to_thread(control.report_end, run, journal=journal)
    return True

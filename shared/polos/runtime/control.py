"""Run control: cancelling runs, and child runs reporting their end to the parent waiting for them."""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools import Logger

from polos.publish import waiters
from polos.runtime import child_batches, deadline, slots
from polos.runtime.journal import Journal
from polos.runtime.records import ErrorInfo, RunRecord
from polos.runtime.waits import WaitingFor

logger = Logger(service="polos")


def report_end(run: RunRecord, *, wake: bool = True, journal: Journal | None = None) -> None:
    """A finished child run completes its parent's waiting step (only while that step waits, so a
    redelivered or replayed report changes nothing) and, with ``wake``, wakes the parent."""
    parent = run.parent
    if parent is None or not run.finished:
        return
    if parent.index is not None:  # one of a batch_invoke_and_wait's children: the last end completes it
        if child_batches.record_end(parent):
            won = child_batches.complete(parent)
            if wake:
                waiters.wake(parent.workflow_id, parent.run_id, parent.step)
            logger.info(
                "last child of a batch ended", extra={"parent_run_id": parent.run_id, "recorded": won}
            )
        return
    if run.status == "completed":
        finished = (journal or Journal()).load_result(run)
        won = waiters.complete_step(parent.run_id, parent.step, result_json=finished.result_json or "null")
    else:
        error = (
            ErrorInfo("RunCancelledError", f"child run {run.run_id} was cancelled")
            if run.status == "cancelled"
            else ErrorInfo(
                run.error.type if run.error else "RunFailedError",
                f"child run {run.run_id} failed: {run.error.message if run.error else 'no error recorded'}",
            )
        )
        won = waiters.complete_step(parent.run_id, parent.step, error_json=error.to_json())
    if wake:
        waiters.wake(parent.workflow_id, parent.run_id, parent.step)
    logger.info("child run reported its end", extra={"parent_run_id": parent.run_id, "recorded": won})


def release_wait(run: RunRecord, journal: Journal | None = None) -> None:
    """A run that ended while it waited (cancelled, or failed at its deadline): its event waiter goes and
    the child it waited for is cancelled too (each idempotent)."""
    if run.waiting_for_json is not None:
        waiting = WaitingFor.from_json(run.waiting_for_json)
        if waiting.topic is not None:
            waiters.WaiterStore().remove(waiting.topic, run.run_id, waiting.step, waiting.match)
        if waiting.kind == "child" and waiting.child is not None:
            cancel(waiting.child, journal, wake_parent=False)
        if waiting.kind == "child" and waiting.children is not None:
            batch = child_batches.child_ids(run.run_id, waiting.step, waiting.children)
            child_batches.each(batch, lambda child: cancel(child, journal, wake_parent=False))


def ended_cancelled(run: RunRecord, journal: Journal | None = None, *, wake_parent: bool = True) -> None:
    """What follows a run becoming ``cancelled``: its wait is released (:func:`release_wait`) and its own
    parent hears of its end (and is woken, unless ``wake_parent`` is off: a parent cancelling its children
    has nothing to wake for, and waking it would cancel them again)."""
    release_wait(run, journal)
    slots.settle(run)  # a run cancelled while queued for a slot leaves its queue's backlog
    report_end(run, wake=wake_parent, journal=journal)


def end_again(run: RunRecord, journal: Journal | None = None) -> None:
    """What follows a finished run's end, done again (a crash may have cut it short; each part is
    idempotent, so its parent hears of it once): a cancelled run's whole effect (:func:`ended_cancelled`),
    a timed-out run's wait released, any other run's end reported to its parent; and its queue slot's
    release and hand-on."""
    if run.status == "cancelled":
        ended_cancelled(run, journal)  # settles the slot too
        return
    if deadline.timed_out(run):
        release_wait(run, journal)
    if run.finished and run.parent is not None:
        report_end(run, journal=journal)
    slots.settle(run)


def cancel(
    run_id: str, journal: Journal | None = None, *, wake_parent: bool = True
) -> tuple[RunRecord, bool] | None:
    """Cancel a run (see :meth:`Journal.cancel`): the run and whether this call changed it; ``None`` when
    there is no such run. What follows a cancel is done again for a run already cancelled (a retried
    request after a crash finishes it)."""
    journal = journal or Journal()
    found = journal.cancel(run_id)
    if found is not None and found[0].status == "cancelled":
        ended_cancelled(found[0], journal, wake_parent=wake_parent)
    return found


ResumeOutcome = Literal["resumed", "no_run", "no_step", "conflict"]


def resume(
    run_id: str, key: str, data: dict[str, Any] | None, idempotency_key: str | None = None
) -> ResumeOutcome:
    """Resume the run's ``suspend`` step ``key`` with ``data`` (its result): one Query to find the step,
    one conditional UpdateItem (exactly one resume wins), one SendMessageBatch, one DeleteItem removing
    the step's event waiter. A retry with the ``idempotency_key`` of the resume that won (its answer was
    lost) is ``resumed`` again, whatever the run did since; any other second resume is a ``conflict``."""
    journal = Journal()
    loaded = journal.load(run_id)
    if loaded is None:
        return "no_run"
    step = next((step for step in loaded.steps if step.key == key), None)
    waiting = WaitingFor.from_json(step.wait_json) if step is not None and step.wait_json else None
    if step is None or waiting is None or waiting.kind != "resume":
        return "no_step"
    retried = idempotency_key is not None and step.completed_by == idempotency_key
    if loaded.run.finished:
        return "resumed" if retried else "conflict"
    if step.status != "waiting":
        # Resumed already; a resume that died after recording it but before its wake-up would leave the
        # run waiting forever: wake it again (a duplicate wake-up is turned away) and finish the removal.
        waiters.wake(loaded.run.workflow_id, run_id, key)
        won = retried
    else:
        text = json.dumps(data if data is not None else {}, separators=(",", ":"), ensure_ascii=False)
        won = waiters.complete(
            loaded.run.workflow_id, run_id, key, result_json=text, completed_by=idempotency_key
        )
    if waiting.topic is not None:
        waiters.WaiterStore().remove(waiting.topic, run_id, key, waiting.match)
    return "resumed" if won else "conflict"

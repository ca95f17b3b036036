"""Recovery after a bug fix: rerunning a run (all of it, or from one of its steps), and cancelling or
rerunning every run of a workflow that matches a filter.

A rerun is a new invoked run of the source's workflow, with the source's payload (or a new one), initial
state and ``run_timeout_seconds``; its run item names the source (``rerun_of``). With ``from_step``, the
source's completed steps before that step (in first-call order) are copied into the new run's partition
first, then the run item is written marking ``from_step`` (so its first attempt reads its journal), then its
message is sent: a crash anywhere is mended by doing the same again (the copies are the same items; the run
id is derived from the source and the request's key, so the run is created once).

Bulk operations walk the workflow's ``by_workflow`` index partitions (and, for a single-event workflow, its
topic's events: ``polos.runtime.event_runs``) newest first (created_before and created_after bound the
Queries), a chunk of entries at a time: the chunk's run items are fetched
(BatchGetItem), those matching act (in parallel), and the answer's cursor is the last entry done. A call
stops at ``limit`` matches (at most 10,000) or when the API function's time runs short. Every act is
idempotent: a cancel is conditional on the run being unfinished (a cancelled run matches again, so that a
retry finishes what a call that died left undone), and a bulk rerun's id is derived from the
source and the operation (the ``Idempotency-Key``, else the filter), so a retried call reruns nothing twice;
a rerun the operation made is never itself matched by it (``rerun_op``).
"""

from __future__ import annotations

import contextvars
import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

from polos.aws import overload
from polos.publish import idempotency
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import control, runs
from polos.runtime.journal import Journal, hashed_run_id
from polos.runtime.records import RunRecord
from polos.runtime.status import RunStatus

MAX_BULK = 10_000  # runs one bulk call acts on at most; its cursor goes on
CHUNK = 100  # index entries fetched (one BatchGetItem) and acted on at once
PARALLEL_ACTS = 16
# A bulk call stops once less than this is left of the API function's time (a chunk's work fits in it).
TIME_RESERVE_SECONDS = 8.0

BulkAction = Literal["cancel", "rerun"]


class SourceNotFinishedError(ValueError):
    """Only a finished run can be rerun."""


class NoSuchStepError(LookupError):
    """``from_step`` names no step of the source run."""


class RerunConflictError(ValueError):
    """The ``Idempotency-Key`` made a rerun of another run, step or payload before."""


def rerun_id(source_id: str, key: str) -> str:
    """The rerun one request (its key) or one bulk operation makes of ``source_id``."""
    return hashed_run_id(source_id, "rerun", key)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def create_rerun(
    source_id: str,
    *,
    new_run_id: str,
    from_step: str | None = None,
    payload_json: str | None = None,
    op: str | None = None,
) -> tuple[RunRecord, bool] | None:
    """Store the rerun ``new_run_id`` of ``source_id`` (``queued``, its message not sent yet) with the
    steps before ``from_step`` copied; the run and whether this call created it (``False``: made before, by
    a call with the same id). ``None`` when there is no such source."""
    journal = Journal()
    items = journal.query_run(source_id, steps=from_step is not None)
    loaded = Journal.decode_partition(items)
    if loaded is None:
        return None
    source = loaded.run
    if not source.finished:
        raise SourceNotFinishedError(
            f"run {source_id!r} is {source.status}; only a finished run can be rerun"
        )
    if payload_json is None:
        payload_json = _compact(runs.stored_payload(source, items))
    if from_step is not None:
        target = next((step for step in loaded.steps if step.key == from_step), None)
        if target is None:
            raise NoSuchStepError(f"from_step: run {source_id!r} has no step {from_step!r}")
        copied = [step for step in loaded.steps if step.index < target.index and step.status == "completed"]
        journal.load_results(source_id, copied)
        for step in copied:  # before the run item: its first attempt must find every one of them
            journal.record_step(new_run_id, step)
    options = runs.RunOptions(
        run_timeout_seconds=source.run_timeout_seconds,
        initial_state_json=source.initial_state_json,
        rerun_of=source_id,
        from_step=from_step,
        rerun_op=op,
    )
    run, created = runs.create_invoked(
        source.workflow_id, payload_json, None, run_id=new_run_id, options=options
    )
    if not created and (run.rerun_of, run.from_step) != (source_id, from_step):
        raise RerunConflictError("Idempotency-Key was already used for another rerun")
    if (
        not created
        and run.payload_json is not None
        and idempotency.request_hash(json.loads(run.payload_json))
        != idempotency.request_hash(json.loads(payload_json))
    ):
        raise RerunConflictError("Idempotency-Key was already used with a different payload")
    return run, created


def send(reruns: list[RunRecord]) -> None:
    """Send the ``invoke`` message of each rerun still ``queued`` (again after a crash: a duplicate is
    turned away by its run's lease)."""
    messages = [
        WorkflowMessage(workflow_id=run.workflow_id, kind="invoke", run_id=run.run_id)
        for run in reruns
        if run.status == "queued"
    ]
    if messages:
        deliver(messages)


# --- bulk ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    """Which runs a bulk operation acts on: a workflow's, optionally of one status and created in
    (``created_after``, ``created_before``) (ISO UTC times, both bounds excluded)."""

    workflow_id: str
    status: RunStatus | None = None
    created_after: str | None = None
    created_before: str | None = None

    def operation(self, action: BulkAction) -> str:
        """The operation's id when the request gave no ``Idempotency-Key``: its action and filter."""
        return f"{action}:" + idempotency.request_hash(asdict(self))

    def matches(self, run: RunRecord, action: BulkAction, op: str) -> bool:
        """Whether the operation acts on ``run``. A cancel matches a ``cancelled`` run too, whatever the
        status asked for: a call that died may have cancelled it without finishing what follows (its
        waiter, its child), which the retry then finishes; and the retry answers the same ``matched``."""
        if self.created_after is not None and run.created_at <= self.created_after:
            return False
        if action == "cancel" and run.status == "cancelled":
            return True
        if self.status is not None and run.status != self.status:
            return False
        if action == "cancel":
            return not run.finished
        return run.finished and run.rerun_op != op  # never a rerun this very operation made


@dataclass(frozen=True)
class BulkResult:
    matched: int
    next_cursor: str | None


def _time_short() -> bool:
    left = overload.seconds_left()
    return left is not None and left < TIME_RESERVE_SECONDS


def bulk(
    action: BulkAction,
    wanted: RunFilter,
    op: str,
    cursor: str | None = None,
    limit: int = MAX_BULK,
    time_short: Callable[[], bool] = _time_short,
) -> BulkResult:
    """Cancel or rerun the runs ``wanted`` names, newest first, from ``cursor`` (``InvalidCursorError`` on
    a bad one): up to ``limit`` of them, a chunk of index entries at a time (see the module)."""
    position = runs.decode_cursor(cursor) if cursor else runs.Cursor()
    bound = None if wanted.created_before is None else (wanted.created_before, "")  # run ids sort above it
    if bound is not None and (position.before is None or bound < position.before):
        position.before = bound  # strictly before it
    matched = 0
    with (
        runs.merged_entries([wanted.workflow_id], position, CHUNK, wanted.created_after, bound) as merged,
        ThreadPoolExecutor(max_workers=PARALLEL_ACTS) as pool,
    ):
        while True:
            entries = list(itertools.islice(merged, min(CHUNK, limit - matched)))
            if not entries:
                return BulkResult(matched, None)
            fetched = runs.fetch_runs(entries)
            chosen = [
                run
                for entry in entries
                if (run := fetched.get(entry)) is not None and wanted.matches(run, action, op)
            ]
            acts = [pool.submit(contextvars.copy_context().run, _act, action, run, op) for run in chosen]
            made = [future.result() for future in acts]
            if action == "rerun":
                send([run for run in made if run is not None])
            matched += len(chosen)
            for entry in entries:
                position.passed(entry)
            if matched >= limit or time_short():
                more = next(merged, None) is not None
                return BulkResult(matched, position.encode() if more else None)


def _act(action: BulkAction, run: RunRecord, op: str) -> RunRecord | None:
    """Cancel ``run``, or store its rerun for ``op`` (returned, its message to send)."""
    if action == "cancel":
        control.cancel(run.run_id)
        return None
    made = create_rerun(run.run_id, new_run_id=rerun_id(run.run_id, op), op=op)
    return None if made is None else made[0]

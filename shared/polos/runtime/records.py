"""Plain records shared by the journal, the executor, the worker and the runs API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from polos.publish.events import EventRef
from polos.runtime.status import TERMINAL
from polos.runtime.status import RunStatus as RunStatus  # re-exported: the runtime imports it from here

StepStatus = Literal["completed", "failed", "waiting"]
TriggerType = Literal["event", "batch", "invoke", "schedule"]
FINISHED: frozenset[str] = TERMINAL
# Error messages are cut to this many characters: a huge message must not push an item past 400 KB.
MAX_ERROR_MESSAGE = 4000
# DynamoDB's item limit is 400 KB. A run item keeps its payload and result inline while together they fit
# this budget (the rest of the item: keys, event refs, an error of at most 16 KB, stays under 40 KB); a
# larger result goes to its own item in the run's partition (an invoked run: payload <= 256 KB, result <=
# 350 KB).
RUN_ITEM_BUDGET = 360 * 1024


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What the runs API shows of an exception (tracebacks go to logs only)."""

    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        message = str(exc)
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[:MAX_ERROR_MESSAGE] + f"… ({len(message) - MAX_ERROR_MESSAGE} more characters)"
        return cls(type=type(exc).__name__, message=message)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, "message": self.message}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> ErrorInfo | None:
        if not text:
            return None
        raw = json.loads(text)
        return cls(type=raw["type"], message=raw["message"])


@dataclass(slots=True)
class StepRecord:
    """One journaled step of a run."""

    key: str
    index: int
    status: StepStatus
    attempts: int
    started_at: str
    finished_at: str
    result_json: str | None = None
    result_tag: str | None = None
    error: ErrorInfo | None = None
    # What a ``waiting`` step waits for (JSON of :class:`polos.runtime.waits.WaitingFor`).
    wait_json: str | None = None
    # The ``Idempotency-Key`` of the resume request that completed a ``suspend`` step.
    completed_by: str | None = None
    # A large result is journaled in its own item: its sort key, and the result's size in bytes (the runs
    # API reads it only when its answer holds it; ``result_json`` is filled in once it is read).
    result_at: str | None = None
    result_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ParentRef:
    """The run (and its waiting step) a child run reports its end to; a child of ``batch_invoke_and_wait``
    is number ``index`` of the step's ``of`` children."""

    run_id: str
    workflow_id: str
    step: str
    index: int | None = None
    of: int | None = None

    def to_json(self) -> str:
        batch = [self.index, self.of] if self.index is not None else []
        return json.dumps([self.run_id, self.workflow_id, self.step, *batch])

    @classmethod
    def from_json(cls, text: str | None) -> ParentRef | None:
        if not text:
            return None
        run_id, workflow_id, step, *batch = json.loads(text)
        index, of = (int(batch[0]), int(batch[1])) if batch else (None, None)
        return cls(str(run_id), str(workflow_id), str(step), index, of)


@dataclass(slots=True)
class RunRecord:
    """A run as the journal holds it."""

    run_id: str
    workflow_id: str
    status: RunStatus
    attempts: int
    trigger_type: TriggerType
    created_at: str
    updated_at: str
    event_refs: list[EventRef] = field(default_factory=list)
    payload_json: str | None = None
    result_json: str | None = None
    error: ErrorInfo | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    # The result is in its own item (``sk=result``); ``result_json`` holds it once that item is read.
    result_apart: bool = False
    # While ``waiting``: what the run waits for (JSON of :class:`polos.runtime.waits.WaitingFor`).
    waiting_for_json: str | None = None
    # Set by a cancel while an attempt runs: that attempt ends the run ``cancelled`` at a step boundary.
    cancel_requested: bool = False
    # A child run started by ``invoke_and_wait``: its end completes this step of that parent run.
    parent: ParentRef | None = None
    # How many bytes of the run item the steps journaled in it take (see ``Journal.finish``).
    kept_steps_bytes: int = 0
    # The run item's size as read (DynamoDB's rules): whether a step still fits it (``StepRunner``).
    item_bytes: int = field(default=0, compare=False)
    # Executions taken for the current message that have not ended well yet (failed, or died), this one
    # included: the lease's write adds one, an attempt that completes, waits or is cancelled clears it, and
    # so does a redrive. ``max_attempts`` of them fail the run (``polos.runtime.dead_letters``).
    message_attempts: int = 0
    # The run failed because its executions ran out: its message belongs in the dead-letter queue.
    dead_letter: bool = False
    # Everything the run reads when it wakes lives at least until then (epoch s; see polos.runtime.retention).
    kept_until: float | None = None
    # The invoke argument ``run_timeout_seconds``: it wins over the workflow option (polos.runtime.deadline).
    run_timeout_seconds: int | None = None
    # ``initial_state`` as given (JSON), and ``ctx.state`` as the last attempt with an outcome left it.
    initial_state_json: str | None = None
    state_json: str | None = None
    # A rerun (polos.runtime.recovery): the source run, the step it reruns from (the steps before it were
    # copied into its partition, so its first attempt reads them) and the bulk operation that made it.
    rerun_of: str | None = None
    from_step: str | None = None
    rerun_op: str | None = None
    # An invoked run's ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key`` (JSON), and the
    # concurrency slot its last attempt took or queued for (see ``polos.runtime.slots``).
    queue_json: str | None = None
    slot_json: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(slots=True)
class LoadedRun:
    """A run with its steps (in first-call order), as one Query returns them."""

    run: RunRecord
    steps: list[StepRecord]

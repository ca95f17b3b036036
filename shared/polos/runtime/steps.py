"""``ctx.step``: the durable step methods, journaled through the run's :class:`Journal`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import random as _random
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from polos import serde
from polos.aws import observability
from polos.aws.item_size import WRITE_UNIT_BYTES
from polos.aws.overload import InfrastructureThrottled
from polos.errors import (
    NonRetryableError,
    RunLeaseLostError,
    StepArgumentError,
    StepExecutionError,
    StepKeyError,
    StepKeyReusedError,
    StepResultError,
    StepTimeoutError,
    WaitTimeoutError,
    WorkflowRunError,
)
from polos.payloads import EventItem, EventPayload, ResumeData
from polos.publish import waiters
from polos.runtime import child_batches, clock, control
from polos.runtime.journal import MAX_SORT_KEY_BYTES, STEP_PREFIX, hashed_run_id, kept_step_bytes, now_iso
from polos.runtime.records import ErrorInfo, ParentRef, RunRecord, StepRecord, StepStatus
from polos.runtime.waits import (
    IN_ATTEMPT_MAX_SECONDS,
    MAX_WAIT_SECONDS,
    RunCancelled,
    RunSuspended,
    WaitingFor,
    is_due,
)
from polos.steps import StepAPI
from polos.topics import canonical_topic

if TYPE_CHECKING:
    from polos.client import ExecutionHandle
    from polos.definition import Workflow
    from polos.runtime.journal import Journal
    from polos.runtime.runs import RunOptions
    from polos.types.types import BatchStepResult, BatchWorkflowInput

logger = Logger(service="polos")

MAX_STEP_KEY_LENGTH = 512
_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])
# An attempt calls no step function once its lease has less than this left: the next attempt may start
# then. A tenth of the lease, at most 5 s (short leases in tests and local runs keep most of their time).
MAX_LEASE_SAFETY_SECONDS = 5.0
# A running attempt reads its run's ``cancel_requested`` (one GetItem) before calling a step function when
# its last look (the lease acquire counts as one) is at least this old: a cancel stops a running run at
# its first step boundary this long after it was asked for, and a run of short steps pays one read a second.
CANCEL_CHECK_SECONDS = 1.0
# A completed step is journaled in its run item (``Journal.keep_step``) rather than in an item of its own
# while the run item, with it and what the run's outcome adds (``outcome_reserve``: at least
# OUTCOME_RESERVE_BYTES, for a short result, the last step and the duration), stays within one write unit.
# The write costs the one unit the step's own item would, the run's later writes still one each, and the
# step's own item (its keys, its expiry and the 100 bytes DynamoDB stores with every item) is not stored: a
# run of five short steps keeps them all in one item. Steps kept this way take at most a write unit of the
# run item's RUN_ITEM_BUDGET slack.
KEEP_STEPS_WITHIN_BYTES = WRITE_UNIT_BYTES
OUTCOME_RESERVE_BYTES = 192
# The most an outcome of each workflow added to its run item (result, error, state, last step), as this
# process saw it: a run keeps steps only while that much room is left too, so a workflow whose outcomes are
# large does not pay a second write unit for them (the first such run in a process may). Process memory
# only, one entry per workflow of the app.
_outcome_bytes: dict[str, int] = {}


def outcome_reserve(workflow_id: str) -> int:
    """The room a run of ``workflow_id`` leaves in its run item for its outcome when it keeps steps."""
    return max(OUTCOME_RESERVE_BYTES, _outcome_bytes.get(workflow_id, 0))


def saw_outcome(workflow_id: str, added_bytes: int) -> None:
    """An outcome of ``workflow_id`` added ``added_bytes`` to its run item."""
    if added_bytes > _outcome_bytes.get(workflow_id, 0):
        _outcome_bytes[workflow_id] = added_bytes


# A completed step is journaled by the attempt's next write (the next step, a wait, a publish, the outcome),
# or this long after it returned while the workflow goes on without one: a crash re-runs it only within it.
PENDING_FLUSH_SECONDS = 1.0


def lease_margin(lease_seconds: float) -> float:
    """How long before its lease lapses an attempt stops calling step functions."""
    return min(MAX_LEASE_SAFETY_SECONDS, lease_seconds / 10)


class StepHooks(Protocol):
    """Failure injection points (``polos.testing`` sets them; production leaves them unset)."""

    def before_call(self, run_id: str, key: str, call: int) -> None: ...

    def after_journal(self, run_id: str, key: str) -> None: ...


_hooks: StepHooks | None = None


def set_step_hooks(hooks: StepHooks | None) -> None:
    """Install (or remove, with ``None``) the process-wide failure injection hooks."""
    global _hooks
    _hooks = hooks


def journaled(run_id: str, key: str) -> None:
    """Tell the hooks a step was journaled (by the executor: the last step, with the run's outcome)."""
    if _hooks is not None:
        _hooks.after_journal(run_id, key)


class _StepFailed(Exception):
    """Internal: a step's function failed for good after ``calls`` calls (``error`` is what to raise)."""

    def __init__(self, error: Exception, calls: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.calls = calls


def _step_body(method: _Method) -> _Method:
    """Run a step method's body marked as running in its task (:meth:`StepRunner._running`)."""

    @functools.wraps(method)
    async def body(self: StepRunner, *args: Any, **kwargs: Any) -> Any:
        with self._running():
            return await method(self, *args, **kwargs)

    return cast(_Method, body)


class StepRunner(StepAPI):
    """``ctx.step`` (:class:`polos.steps.StepAPI`): every method journals its result under a key unique
    within the run."""

    def __init__(
        self,
        *,
        run_id: str,
        journal: Journal,
        steps: list[StepRecord],
        lease_until: float,
        lease_margin: float = MAX_LEASE_SAFETY_SECONDS,
        lease_owner: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        workflow_id: str = "",
        suspended: str | None = None,
        workflow: Workflow | None = None,
        run_item_bytes: int | None = None,
    ) -> None:
        self._run_id = run_id
        self._workflow = workflow  # the run's own: its app's workflows type the children's results
        self._suspended = suspended  # the run's copy of what it waited for when this attempt began
        self._workflow_id = workflow_id
        self._cancel_checked = time.time()
        self._cancel_seen = False  # a look at the run item showed a cancel asked for: no step is called
        self._journal = journal
        self._journaled = {step.key: step for step in steps}
        self._earlier = set(self._journaled)  # journaled by earlier attempts: never kept in the run item
        # The run item's size as the lease's answer showed it, plus the steps kept in it since (``_keeps``);
        # ``None``: unknown, no step is kept there.
        self._run_item_bytes = run_item_bytes
        self._next_index = max((step.index for step in steps), default=-1) + 1
        self._used: set[str] = set()
        self._call_deadline = lease_until - lease_margin
        self._lease_owner = lease_owner
        self._sleep = sleep
        # The last completed step, not journaled yet: it is written when the next step starts, with the
        # run's outcome (``take_pending``), or by ``_flush_late`` after PENDING_FLUSH_SECONDS, whichever comes
        # first. A crash before it re-runs it (at-least-once, as a crash between a step's return and its own
        # write always did); a journaled step never runs again.
        self._pending: StepRecord | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing_late: asyncio.Task[None] | None = None
        # Steps awaited together (asyncio.gather, wait, TaskGroup): the tasks in a step's body now, so that
        # a step completing beside others is journaled at once, and the attempt ends only once they settled.
        self._in_flight: dict[asyncio.Task[Any] | None, int] = {}

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """Mark the calling task as inside a step's body (re-entrant per task)."""
        task = asyncio.current_task()
        self._in_flight[task] = self._in_flight.get(task, 0) + 1
        try:
            yield
        finally:
            self._in_flight[task] -= 1
            if not self._in_flight[task]:
                del self._in_flight[task]

    def _beside_others(self) -> bool:
        """Whether another task is in a step's body: a step completing now is journaled at once."""
        current = asyncio.current_task()
        return any(task is not current for task in self._in_flight)

    def settle(self) -> Awaitable[None]:
        """Let the steps still running beside the handler's end (it returned, raised or suspended while
        steps awaited together went on) finish and journal themselves, up to the lease's call deadline;
        those still running then are cancelled (not journaled: the next attempt calls them again). For the
        executor, not a step method (so not a coroutine function of ``ctx.step``'s)."""
        return self._settle()

    async def _settle(self) -> None:
        current = asyncio.current_task()
        others = {task for task in self._in_flight if task is not None and task is not current}
        if others:
            await self._stop_after_deadline(others)
        self._cancel_flush_timer()  # the pending step goes with the outcome now
        await self._late_flush_done()

    async def _stop_after_deadline(self, others: set[asyncio.Task[Any]]) -> None:
        _, late = await asyncio.wait(others, timeout=max(0.0, self._call_deadline - time.time()))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        for task in others:  # their outcomes are journaled; retrieved so asyncio does not warn of them
            if not task.cancelled():
                task.exception()

    def take_pending(self) -> StepRecord | None:
        """The completed step not journaled yet, for the executor to write with the run's outcome."""
        self._cancel_flush_timer()
        pending, self._pending = self._pending, None
        return pending

    def _defer(self, step: StepRecord) -> None:
        """Leave the completed ``step`` pending: journaled by the attempt's next write, or by
        ``_flush_late`` if the workflow goes on for PENDING_FLUSH_SECONDS without one."""
        self._pending = step
        self._cancel_flush_timer()
        self._flush_timer = asyncio.get_running_loop().call_later(PENDING_FLUSH_SECONDS, self._flush_late)

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _flush_late(self) -> None:
        self._flush_timer = None
        if self._pending is not None and self._flushing_late is None:
            self._flushing_late = asyncio.ensure_future(self._write_late())

    async def _write_late(self) -> None:
        """Journal the pending step while the workflow goes on. On failure it stays pending (written with the
        outcome or by the next step); a crash (``BaseException``) reaches whoever awaits this next."""
        pending = self.take_pending()
        try:
            if pending is not None:
                await self._write(pending)
        except Exception:
            self._pending = pending

    async def _late_flush_done(self) -> None:
        """Wait for a late journal write in flight: whatever follows depends on it."""
        if self._flushing_late is not None:
            await asyncio.shield(self._flushing_late)
            self._flushing_late = None

    async def _flush(self) -> None:
        """Journal the pending step now (something durable follows it)."""
        await self._late_flush_done()
        pending = self.take_pending()
        if pending is not None:
            try:
                await self._write(pending)
            except InfrastructureThrottled:
                self._pending = pending  # still to journal: with the outcome, or by the next attempt
                raise

    async def run(
        self,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        max_retries: int = 2,
        base_delay: float = 1.0,
        max_delay: float = 10.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the Polos SDK's name: a call's time limit)
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once per run (retried in-process, or after a durable wait when the
        backoff is over 10 s), journal and return its result."""
        if not callable(fn):
            raise TypeError(f"step {key!r}: fn must be callable, got {type(fn).__name__}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"step {key!r}: max_retries must be an integer >= 0, got {max_retries!r}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError(f"step {key!r}: base_delay and max_delay must be >= 0")
        kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,) if retry_on is not None else None
        if kinds is not None and not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
            raise StepArgumentError(f"step {key!r}: retry_on must be exception classes, got {retry_on!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise StepArgumentError(f"step {key!r}: timeout must be a number of seconds > 0, got {timeout!r}")
        backoff = _Backoff(max_retries, base_delay, max_delay, kinds, timeout)
        return await self._durable(key, fn, args, kwargs, backoff)

    async def publish_event(
        self, key: str, topic: str, data: dict[str, Any], event_type: str | None = None
    ) -> EventItem:
        """Publish one event like the HTTP API does; stored once however often the run is replayed."""
        canonical = canonical_topic(topic)
        # A deterministic client-given id: the event store keeps one event per id and topic.
        event_id = "evt_" + hashlib.sha256(f"{self._run_id}\x00{key}".encode()).hexdigest()[:26]

        def publish() -> EventItem:
            from polos.publish.publishing import (  # the publish side loads on first use
                NewEvent,
                publish_events,
            )

            result = publish_events(canonical, [NewEvent(id=event_id, data=data, event_type=event_type)])
            event: EventItem = result.events[0]
            return event

        event: EventItem = await self._durable(key, publish, (), {}, _Backoff(2, 0.2, 2.0), EventItem)
        return event

    async def uuid(self, key: str) -> str:
        """A random UUID (string), the same on every replay."""
        value: str = await self._durable(key, lambda: str(_uuid.uuid4()), (), {}, _ONCE, str)
        return value

    async def now(self, key: str) -> int:
        """The current time in milliseconds since the epoch (the official SDK's), the same on every
        replay."""
        value: int | datetime = await self._durable(
            key, lambda: int(time.time() * 1000), (), {}, _ONCE, int | datetime
        )
        # A run journaled before `now` answered milliseconds replays its datetime as milliseconds.
        return value if isinstance(value, int) else int(value.timestamp() * 1000)

    async def random(self, key: str) -> float:
        """A random float in [0, 1), the same on every replay."""
        value: float = await self._durable(key, _random.random, (), {}, _ONCE, float)
        return value

    def _claim_key(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise StepKeyError(f"step key must be a non-empty string, got {key!r}")
        if len(key) > MAX_STEP_KEY_LENGTH:
            raise StepKeyError(f"step key {key[:40]!r}… is longer than {MAX_STEP_KEY_LENGTH} characters")
        # The sort keys that hold a step key: its journal item's, and an event waiter's (`<run id>#<key>`).
        key_bytes = len(key.encode("utf-8", "surrogatepass"))
        for prefix in (STEP_PREFIX, f"{self._run_id}#"):
            size = len(prefix.encode()) + key_bytes
            if size > MAX_SORT_KEY_BYTES:
                raise StepKeyError(
                    f"step key {key[:40]!r}… is {key_bytes} bytes in UTF-8: the sort key that holds it "
                    f"({prefix!r} + key) would be {size} bytes, over DynamoDB's {MAX_SORT_KEY_BYTES} bytes"
                )
        if key in self._used:
            raise StepKeyReusedError(
                f"step key {key!r} is used twice in run {self._run_id}; keys must be unique within a run"
            )
        self._used.add(key)

    async def wait_for(
        self,
        key: str,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
    ) -> None:
        """Wait durably: the run ends its attempt and resumes after this long (short waits sleep in place)."""
        parts = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days, "weeks": weeks}
        for name, value in parts.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StepArgumentError(f"step {key!r}: {name} must be a number, got {value!r}")
        total = seconds + 60 * minutes + 3600 * hours + 86400 * days + 604800 * weeks
        if not 0 <= total <= MAX_WAIT_SECONDS:
            raise StepArgumentError(
                f"step {key!r}: a wait must last from 0 to 365 days; got {total} seconds in all"
            )
        await self._wait(key, lambda now: now + total)

    async def wait_until(self, key: str, timestamp: datetime) -> None:
        """Wait durably until ``timestamp`` (aware; naive means UTC); a past time returns at once."""
        if not isinstance(timestamp, datetime):
            raise StepArgumentError(
                f"step {key!r}: timestamp must be a datetime, got {type(timestamp).__name__}"
            )
        moment = (timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)).timestamp()

        def until(now: float) -> float:
            if moment - now > MAX_WAIT_SECONDS:
                raise StepArgumentError(f"step {key!r}: {timestamp.isoformat()} is more than 365 days ahead")
            return moment

        await self._wait(key, until)

    @_step_body
    async def _wait(self, key: str, deadline: Callable[[float], float]) -> None:
        """The wait step: its deadline is computed once and journaled, so a replay never waits longer."""
        self._claim_key(key)
        await self._flush()
        previous = self._journaled.get(key)
        if previous is not None and previous.status == "completed":
            return
        now = clock.now()
        if previous is not None and previous.wait_json is not None:
            waiting = WaitingFor.from_json(previous.wait_json)
        else:
            waiting = WaitingFor(step=key, kind="timer", until=deadline(now))
        index = previous.index if previous is not None else self._claim_index()
        started_at = previous.started_at if previous is not None else now_iso()
        left = (waiting.until or now) - now
        if is_due(waiting, None, now) or (
            left <= IN_ATTEMPT_MAX_SECONDS and time.time() + left < self._call_deadline
        ):
            if left > 0:
                await self._sleep(left)
            await self._journal_step(
                StepRecord(key, index, "completed", 0, started_at, now_iso(), result_json="null")
            )
            if previous is not None:
                observability.count("WaitsResumed")
            return
        if previous is None:
            await self._journal_step(
                StepRecord(key, index, "waiting", 0, started_at, "", wait_json=waiting.to_json())
            )
        raise RunSuspended(waiting)

    async def _check_cancel(self) -> None:
        """Stop (``RunCancelled``) before a step function when a cancel was asked for; see
        :data:`CANCEL_CHECK_SECONDS` for how often this reads the run item."""
        if not self._cancel_seen and time.time() - self._cancel_checked >= CANCEL_CHECK_SECONDS:
            looked = time.time()
            self._looked(await asyncio.to_thread(self._journal.cancel_requested, self._run_id), looked)
        if self._cancel_seen:
            raise RunCancelled(f"run {self._run_id} cancelled")

    def _looked(self, cancel_requested: bool, at: float) -> None:
        """The run item showed ``cancel_requested`` as it was at ``at`` (a read, or a kept step's answer)."""
        self._cancel_checked = max(self._cancel_checked, at)
        self._cancel_seen = self._cancel_seen or cancel_requested

    async def wait_for_event(
        self,
        key: str,
        topic: str,
        timeout: float | None = None,  # noqa: ASYNC109  (the Polos SDK's name: a durable timeout)
        *,
        event_type: str | None = None,
        match: dict[str, Any] | None = None,
    ) -> EventPayload:
        """The first event on ``topic`` published after this step was first reached (of ``event_type``,
        whose data holds every key/value of ``match``); ``StepExecutionError`` once ``timeout`` s pass."""
        canonical = canonical_topic(topic)
        if match is not None and not isinstance(match, dict):
            raise StepArgumentError(f"step {key!r}: match must be a dict, got {type(match).__name__}")
        if event_type is not None and not isinstance(event_type, str):
            raise StepArgumentError(f"step {key!r}: event_type must be a string")
        step = await self._wait_for_completion(
            key, "event", timeout, topic=canonical, event_type=event_type, match=match
        )
        return EventPayload.model_validate_json(step.result_json or "null")

    async def suspend(
        self,
        key: str,
        data: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Pause until resumed (``POST /api/v1/runs/{run_id}/resume``, or a ``resume_<key>`` event on the
        run's topic); returns the resume's data. ``data`` is shown with the waiting step."""
        topic = waiters.run_topic(self._workflow_id, self._run_id)
        step = await self._wait_for_completion(
            key, "resume", timeout, topic=topic, event_type=waiters.resume_event_type(key), shown=data
        )
        value: dict[str, Any] = serde.from_json(step.result_json or "null", None, what=f"data of {key!r}")
        return ResumeData(value) if isinstance(value, dict) else value

    @_step_body
    async def invoke(
        self,
        key: str,
        workflow: Any,
        payload: Any = None,
        *,
        run_timeout_seconds: int | None = None,
        initial_state: Any = None,
        queue_name: str | None = None,
        queue_concurrency_limit: int | None = None,
        concurrency_key: str | None = None,
    ) -> ExecutionHandle:
        """Start a child run of ``workflow`` (an object or id) once, however often this run replays;
        returns its :class:`~polos.client.ExecutionHandle` (a replay rebuilds an equal one). The queue
        arguments are those of ``Workflow.invoke``."""
        from polos.client import ExecutionHandle  # the client module loads on first use (cold start)

        self._claim_key(key)
        await self._flush()
        what = f"handle of step {key!r}"
        previous = self._journaled.get(key)
        if previous is not None and previous.status == "completed":
            replayed: ExecutionHandle = serde.from_json(
                previous.result_json or "null", ExecutionHandle, what=what
            )
            return replayed
        queue_json = _queueing(key, queue_name, queue_concurrency_limit, concurrency_key)
        options = _child_options(key, workflow, run_timeout_seconds, initial_state, queue_json)
        child = await asyncio.to_thread(self._start_child, key, workflow, payload, False, options)
        handle = ExecutionHandle(
            id=child.run_id,
            workflow_id=child.workflow_id,
            created_at=child.created_at,
            parent_execution_id=self._run_id,
            step_key=key,
        )
        index = previous.index if previous is not None else self._claim_index()
        description = WaitingFor(step=key, kind="child", child=child.run_id).to_json()
        await self._journal_step(
            StepRecord(
                key,
                index,
                "completed",
                1,
                now_iso(),
                now_iso(),
                serde.to_json(handle, what=what),
                wait_json=description,
            )
        )
        return handle

    async def invoke_and_wait(
        self,
        key: str,
        workflow: Any,
        payload: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        run_timeout_seconds: int | None = None,
        initial_state: Any = None,
    ) -> Any:
        """Start a child run once and wait, durably, for its end: its result (typed as the child's return
        annotation when ``workflow`` is the workflow itself, as ``Workflow.run`` types it), or
        ``StepExecutionError`` when it failed or was cancelled."""
        options = _child_options(key, workflow, run_timeout_seconds, initial_state)
        step = await self._wait_for_completion(key, "child", timeout, child_of=(workflow, payload, options))
        result = json.loads(step.result_json or "null")
        build_result = getattr(workflow, "build_result", None)
        return build_result(result) if callable(build_result) else result

    @_step_body
    async def batch_invoke(self, key: str, workflows: list[BatchWorkflowInput]) -> list[ExecutionHandle]:
        """Start every child once, however often this run replays; their handles, in input order."""
        from polos.client import ExecutionHandle

        self._claim_key(key)
        await self._flush()
        children = _batch_children(key, workflows)
        previous = self._journaled.get(key)
        what = f"handles of step {key!r}"
        if previous is not None and previous.status == "completed":
            replayed: list[ExecutionHandle] = serde.from_json(
                previous.result_json or "[]", list[ExecutionHandle], what=what
            )
            return replayed
        started = await asyncio.to_thread(
            child_batches.start, self._run_id, self._workflow_id, key, children, False
        )
        handles = [
            ExecutionHandle(
                id=run.run_id,
                workflow_id=run.workflow_id,
                created_at=run.created_at,
                parent_execution_id=self._run_id,
                step_key=key,
            )
            for run in started
        ]
        index = previous.index if previous is not None else self._claim_index()
        description = WaitingFor(step=key, kind="child", children=len(children)).to_json()
        stamp = now_iso()
        text = serde.to_json(handles, what=what)
        await self._journal_step(
            StepRecord(key, index, "completed", 1, stamp, stamp, text, wait_json=description)
        )
        return handles

    @_step_body
    async def batch_invoke_and_wait(
        self, key: str, workflows: list[BatchWorkflowInput]
    ) -> list[BatchStepResult]:
        """Start every child once and wait, durably and once, until the last one ended; every child's
        outcome, in input order (a failed or cancelled child is ``success=False`` with its error)."""
        from polos.types.types import BatchStepResult

        self._claim_key(key)
        await self._flush()
        children = _batch_children(key, workflows)
        previous = self._journaled.get(key)
        if not children:
            return []
        if previous is None or previous.status == "waiting":
            waiting = WaitingFor(step=key, kind="child", children=len(children))
            if previous is None:
                index = self._claim_index()
                await self._journal_step(
                    StepRecord(key, index, "waiting", 0, now_iso(), "", wait_json=waiting.to_json())
                )
            started = await asyncio.to_thread(
                child_batches.start, self._run_id, self._workflow_id, key, children, True
            )
            ended = [run for run in started if run.finished]  # on a replay: ends that may not be reported
            if not ended:
                raise RunSuspended(waiting)
            await asyncio.to_thread(
                child_batches.each, ended, lambda run: control.report_end(run, wake=False)
            )
            step = await asyncio.to_thread(self._journal.get_step, self._run_id, key)
            if step is None or step.status == "waiting":
                raise RunSuspended(waiting)
            self._journaled[key] = previous = step
        outcome = self._outcome(key, previous)
        results = [BatchStepResult.model_validate(item) for item in json.loads(outcome.result_json or "[]")]
        return [self._typed(result) for result in results]

    def _typed(self, outcome: BatchStepResult) -> BatchStepResult:
        """A child's result typed as its workflow's return annotation, as ``Workflow.run`` types it (when
        the workflow is of this run's app; else as the JSON it is)."""
        from polos.definition import registry

        child = None if self._workflow is None else registry.sibling(self._workflow, outcome.workflow_id)
        if child is None or not outcome.success:
            return outcome
        return outcome.model_copy(update={"result": child.build_result(outcome.result)})

    def _start_child(
        self, key: str, workflow: Any, payload: Any, wait: bool, options: RunOptions | None = None
    ) -> RunRecord:
        from polos.runtime import runs  # the runs module creates and enqueues invoked runs

        workflow_id = workflow if isinstance(workflow, str) else getattr(workflow, "id", None)
        if not isinstance(workflow_id, str):
            raise StepArgumentError(f"step {key!r}: workflow must be a workflow or its id, got {workflow!r}")
        text = serde.to_json(payload, what=f"payload of step {key!r}")
        parent = ParentRef(self._run_id, self._workflow_id, key) if wait else None
        run_id = hashed_run_id(self._run_id, "child", key)
        child, _ = runs.create_invoked(workflow_id, text, None, run_id=run_id, parent=parent, options=options)
        if child.status == "queued":
            runs.enqueue(child)  # again on a replay: a duplicate invoke message is turned away
        return child

    @_step_body
    async def _wait_for_completion(
        self,
        key: str,
        kind: Literal["event", "resume", "child"],
        timeout: float | None,  # noqa: ASYNC109
        *,
        topic: str | None = None,
        event_type: str | None = None,
        match: dict[str, Any] | None = None,
        shown: dict[str, Any] | None = None,
        child_of: tuple[Any, Any, RunOptions | None] | None = None,
    ) -> StepRecord:
        """A wait that something else completes (an event, a resume, a child's end): journal the step
        ``waiting``, register what completes it, look back for what already happened, else suspend the
        run. Returns the completed step; raises ``StepExecutionError`` when it failed or timed out."""
        self._claim_key(key)
        await self._flush()
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_WAIT_SECONDS
        ):
            raise StepArgumentError(f"step {key!r}: timeout must be a number of seconds in (0, 365 days]")
        previous = self._journaled.get(key)
        if previous is not None and previous.status != "waiting":
            return self._outcome(key, previous)
        now = clock.now()
        if previous is not None and previous.wait_json is not None:
            waiting = WaitingFor.from_json(previous.wait_json)
        else:
            after = (
                await asyncio.to_thread(waiters.WaiterStore().anchor, topic) if topic is not None else None
            )
            child = hashed_run_id(self._run_id, "child", key) if kind == "child" else None
            until = now + timeout if timeout is not None else None
            waiting = WaitingFor(key, kind, until, topic, event_type, match, child, after)
            index = self._claim_index()
            started = StepRecord(key, index, "waiting", 0, now_iso(), "", wait_json=waiting.to_json())
            if shown is not None:
                started.result_json = serde.to_json(shown, what=f"data of step {key!r}")
            await self._journal_step(started)
        if kind == "resume" and waiting.topic is not None:
            await asyncio.to_thread(self._announce_suspend, key, waiting.topic, shown)
        if waiting.until is not None and now >= waiting.until:
            error = ErrorInfo.of(WaitTimeoutError(f"step {key!r}: no {kind} came within its timeout"))
            await asyncio.to_thread(waiters.complete_step, self._run_id, key, error_json=error.to_json())
            await asyncio.to_thread(self._unregister, waiting)
            return self._outcome(key, await self._reread(key))
        if waiting.topic is not None:
            suspended = await asyncio.to_thread(self._register_and_look_back, waiting)
            if suspended is None:
                return self._outcome(key, await self._reread(key))
            raise RunSuspended(suspended)
        elif child_of is not None:
            run = await asyncio.to_thread(self._start_child, key, *child_of[:2], True, child_of[2])
            if run.finished:  # it ended before this attempt (a replay): its end is this step's result
                await asyncio.to_thread(control.report_end, run, wake=False)
                return self._outcome(key, await self._reread(key))
        raise RunSuspended(waiting)

    def _announce_suspend(self, key: str, topic: str, data: dict[str, Any] | None) -> None:
        """Publish ``suspend_<key>`` with ``data`` on the run's topic, as the official runtime does (a
        client streaming the run sees it). Published after the step is journaled ``waiting``, so whoever
        sees it can resume at once; its id is derived from the run and step, so however often the run
        reaches the step (replays, rechecks) it is stored once. Its type is not ``resume_<key>``: it cannot
        resume the step."""
        from polos.publish.publishing import NewEvent, publish_events  # the publish side loads on first use

        event_id = "evt_" + hashlib.sha256(f"{self._run_id}\x00suspend\x00{key}".encode()).hexdigest()[:26]
        announced = NewEvent(id=event_id, data=data or {}, event_type=waiters.suspend_event_type(key))
        publish_events(topic, [announced])

    def _register_and_look_back(self, waiting: WaitingFor) -> WaitingFor | None:
        """Register the event waiter, then look at the events published since the step was first reached,
        up to the anchor the registration read (the registration race, see :mod:`polos.publish.waiters`);
        on a recheck, only at the ids the run's copy says were not seen. ``None`` when the step is completed,
        else what the run waits for, with when to look back once more or register again."""
        store = waiters.WaiterStore()
        waiter = waiters.Waiter(
            topic=str(waiting.topic),
            workflow_id=self._workflow_id,
            run_id=self._run_id,
            step=waiting.step,
            after=waiting.after or 0,
            kind="resume" if waiting.kind == "resume" else "event",
            event_type=waiting.event_type,
            match=waiting.match,
        )
        reserved = store.register(waiter, waiting.until)
        earlier = self._unchecked(waiting.step)
        first, upto = earlier if earlier is not None else (waiter.after, reserved)
        looked = waiters.first_match(store, waiter, first, upto)
        if looked.event is not None:
            waiters.complete_step(self._run_id, waiting.step, result_json=waiter.result_json(looked.event))
            store.remove_found(waiter)
            return None
        # After a recheck the ids still unseen are gaps, or stored by a client's retry that matches itself.
        checked = upto if earlier is not None else looked.checked
        moments = [clock.now() + waiters.recheck_delay()] if checked < upto else []
        if waiting.until is None:  # an untimed wait keeps its waiter and mark alive by registering again
            moments.append(clock.now() + waiters.UNTIMED_RENEW_SECONDS)
        return dataclasses.replace(
            waiting, recheck=min(moments, default=None), checked=checked, reserved=upto
        )

    def _unchecked(self, key: str) -> tuple[int, int] | None:
        """The ids an earlier attempt's look-back at step ``key`` had not seen (``(checked, reserved]``, from
        the run's copy of what it waits for), ``None`` when no earlier attempt suspended on it."""
        if self._suspended is None:
            return None
        earlier = WaitingFor.from_json(self._suspended)
        if earlier.step != key or earlier.checked is None or earlier.reserved is None:
            return None
        return earlier.checked, earlier.reserved

    def _unregister(self, waiting: WaitingFor) -> None:
        if waiting.topic is not None:
            waiters.WaiterStore().remove(waiting.topic, self._run_id, waiting.step, waiting.match)

    async def _reread(self, key: str) -> StepRecord:
        step = await asyncio.to_thread(self._journal.get_step, self._run_id, key)
        if step is None or step.status == "waiting":
            raise RunLeaseLostError(f"step {key!r} of run {self._run_id} is not completed as expected")
        self._journaled[key] = step
        return step

    @staticmethod
    def _outcome(key: str, step: StepRecord) -> StepRecord:
        """The completed step, or its error raised as ``StepExecutionError``."""
        if step.status == "completed":
            return step
        info = step.error or ErrorInfo("WaitError", "the wait failed")
        cause: Exception = (
            WaitTimeoutError(info.message)
            if info.type == "WaitTimeoutError"
            else WorkflowRunError(key, info.type, info.message)
        )
        failure = StepExecutionError(key, 1, cause)
        failure.__cause__ = cause
        raise failure

    @_step_body
    async def _durable(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        backoff: _Backoff,
        result_type: Any = None,
    ) -> Any:
        self._claim_key(key)
        await self._flush()
        what = f"result of step {key!r}"
        declared = result_type if result_type is not None else serde.declared_type(fn)
        previous = self._journaled.get(key)
        if previous is not None and previous.status == "completed" and previous.result_json is not None:
            logger.debug("step replayed from the journal", extra={"step_key": key})
            rebuild_as = declared or serde.resolve_tag(previous.result_tag)
            return serde.from_json(previous.result_json, rebuild_as, what=what)
        index = previous.index if previous is not None else self._claim_index()
        prior_calls = previous.attempts if previous is not None else 0
        started_at = now_iso()
        retrying = _retry_wait(previous)  # a durable wait between two calls: the calls go on counting
        if retrying is not None:
            if clock.now() < (retrying.until or 0):
                raise RunSuspended(retrying)  # replayed for another step's sake: this one still waits
            started_at = previous.started_at if previous is not None else started_at
        first_call = prior_calls + 1 if retrying is not None else 1
        last_error = previous.error if retrying is not None and previous is not None else None

        def record(
            status: StepStatus, calls: int, finished_at: str | None = None, **fields: Any
        ) -> StepRecord:
            fields.setdefault("error", last_error)
            finished = now_iso() if finished_at is None else finished_at
            return StepRecord(key, index, status, prior_calls + calls, started_at, finished, **fields)

        failed: _StepFailed | None = None
        later: _RetryLater | None = None
        with observability.step_segment(key):
            try:
                value, calls, last = await self._call_with_retries(key, fn, args, kwargs, backoff, first_call)
            except _StepFailed as exc:
                failed = exc
            except _RetryLater as exc:
                later = exc
        if later is not None:  # a backoff over 10 s: the run waits durably, nothing billed meanwhile
            waiting = WaitingFor(step=key, kind="retry", until=clock.now() + later.pause)
            error = ErrorInfo.of(later.error)
            await self._journal_step(
                record("waiting", later.calls, error=error, wait_json=waiting.to_json(), finished_at="")
            )
            raise RunSuspended(waiting)
        if failed is not None:  # raised outside the handler so the error's context stays its own
            await self._journal_step(record("failed", failed.calls, error=_cause_of(failed.error)))
            raise failed.error
        if last is not None:
            last_error = ErrorInfo.of(last)
        tag = None if declared is not None else serde.type_tag(value)
        try:
            text = serde.to_json(value, what=what)
            # Rebuilt now, exactly as a replay will: the first run sees what every replay sees.
            restored = serde.from_json(text, declared or serde.resolve_tag(tag), what=what)
        except StepResultError as exc:
            await self._journal_step(record("failed", calls, error=ErrorInfo.of(exc)))
            raise
        completed = record("completed", calls, result_json=text, result_tag=tag)
        if self._beside_others():  # awaited together with other steps: one may fail the attempt next
            await self._journal_step(completed)
        else:  # journaled when the next step starts, with the run's outcome, or within PENDING_FLUSH_SECONDS
            self._defer(completed)
        return restored

    def _claim_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    async def _journal_step(self, step: StepRecord) -> None:
        await self._flush()
        await self._write(step)

    def _keeps(self, step: StepRecord) -> bool:
        """Whether ``step`` is journaled in its run item (``Journal.keep_step``), and if so count its bytes
        there (before the write: steps journaled together each see the others')."""
        if self._run_item_bytes is None or self._lease_owner is None:
            return False
        if step.status != "completed" or step.key in self._earlier:
            return False
        size = kept_step_bytes(step)
        if self._run_item_bytes + size + outcome_reserve(self._workflow_id) > KEEP_STEPS_WITHIN_BYTES:
            return False
        self._run_item_bytes += size
        return True

    async def _write(self, step: StepRecord) -> None:
        if self._keeps(step):
            owner, looked = str(self._lease_owner), time.time()
            self._looked(await asyncio.to_thread(self._journal.keep_step, self._run_id, step, owner), looked)
            journaled(self._run_id, step.key)
            return
        # While the lease has more than its margin left (the margin covers clock skew and the request's
        # flight), no other attempt can hold it: a plain PutItem. Past that point another attempt may have
        # taken the run over: the write is fenced by the lease owner (a transaction, 4 write units instead
        # of 1), so a zombie attempt writes nothing and stops (``RunLeaseLostError``).
        at_risk = time.time() >= self._call_deadline
        fence = self._lease_owner if at_risk else None
        await asyncio.to_thread(lambda: self._journal.record_step(self._run_id, step, fence_owner=fence))
        journaled(self._run_id, step.key)

    async def _call_with_retries(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        backoff: _Backoff,
        first_call: int = 1,
    ) -> tuple[Any, int, Exception | None]:
        """``(value, calls made here, the last failed call's error)``; :class:`_StepFailed` when the
        function fails for good, :class:`_RetryLater` when the next call is for a later attempt.
        ``first_call`` numbers the first call (after a durable retry wait the count goes on)."""
        await self._check_cancel()
        last: Exception | None = None
        # at least one call: a retry wait journaled before ``max_retries`` was lowered still gets its call
        for call in range(first_call, max(first_call, backoff.max_retries + 1) + 1):
            made = call - first_call + 1
            if time.time() > self._call_deadline:
                raise RunLeaseLostError(f"run {self._run_id}: lease about to lapse; step {key!r} not called")
            try:
                if _hooks is not None:
                    _hooks.before_call(self._run_id, key, call)
                value = await _call(key, fn, args, kwargs, backoff.timeout, call)
                return value, made, last
            except NonRetryableError as exc:
                raise _StepFailed(exc, made) from exc
            except InfrastructureThrottled:
                raise  # our own AWS call (publish_event's), not the step's failure: the attempt stops
            except Exception as exc:
                if call > backoff.max_retries or not backoff.retries(exc):
                    failure = StepExecutionError(key, call, exc)
                    failure.__cause__ = exc
                    raise _StepFailed(failure, made) from exc
                last = exc
                pause = backoff.pause(call)
                if pause > IN_ATTEMPT_MAX_SECONDS or time.time() + pause >= self._call_deadline:
                    logger.warning(
                        "step call failed; retrying after a durable wait",
                        extra={
                            "step_key": key,
                            "call": call,
                            "retry_in_s": round(pause, 3),
                            "error": repr(exc),
                        },
                    )
                    observability.count("StepRetries")
                    raise _RetryLater(exc, made, pause) from exc
                logger.warning(
                    "step call failed; retrying",
                    extra={"step_key": key, "call": call, "retry_in_s": round(pause, 3), "error": repr(exc)},
                )
                observability.count("StepRetries")
                await self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover


class _RetryLater(Exception):
    """Internal: call ``calls`` (made in this attempt) failed with ``error``; the next one is due in
    ``pause`` seconds, too long to sleep in the attempt."""

    def __init__(self, error: Exception, calls: int, pause: float) -> None:
        super().__init__(str(error))
        self.error, self.calls, self.pause = error, calls, pause


async def _call(
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limit: float | None,
    call: int,
) -> Any:
    """One call of a step's function, within ``limit`` seconds when given (:class:`StepTimeoutError`)."""

    async def called() -> Any:
        if _is_async(fn):
            return await fn(*args, **kwargs)
        # A thread, so that a blocking call does not stall the other runs of the invocation.
        value = await asyncio.to_thread(fn, *args, **kwargs)
        return await value if inspect.isawaitable(value) else value

    if limit is None:
        return await called()
    try:
        return await asyncio.wait_for(called(), limit)
    except TimeoutError as exc:
        if isinstance(exc, StepTimeoutError):
            raise
        raise StepTimeoutError(
            f"step {key!r}: call {call} ran longer than its timeout of {limit} s"
        ) from None


def _batch_children(key: str, workflows: Any) -> list[child_batches.Child]:
    """The children a batch step names, validated before anything is started."""
    from polos.types.types import BatchWorkflowInput

    if not isinstance(workflows, list | tuple):
        raise StepArgumentError(f"step {key!r}: workflows must be a list of BatchWorkflowInput")
    if len(workflows) > child_batches.MAX_CHILDREN:
        raise StepArgumentError(
            f"step {key!r}: {len(workflows)} children; a batch step starts at most "
            f"{child_batches.MAX_CHILDREN} (split them over several steps)"
        )
    children = []
    for number, given in enumerate(workflows):
        try:
            item = (
                given if isinstance(given, BatchWorkflowInput) else BatchWorkflowInput.model_validate(given)
            )
        except ValueError as exc:
            raise StepArgumentError(
                f"step {key!r}: workflows[{number}] is not a BatchWorkflowInput: {exc}"
            ) from exc
        if not item.id:
            raise StepArgumentError(f"step {key!r}: workflows[{number}].id must be a workflow id")
        text = serde.to_json(item.payload, what=f"payload of workflows[{number}] of step {key!r}")
        children.append(child_batches.Child(item.id, text))
    return children


def _retry_wait(step: StepRecord | None) -> WaitingFor | None:
    """The durable retry wait a journaled step is in, if any."""
    if step is None or step.status != "waiting" or step.wait_json is None:
        return None
    waiting = WaitingFor.from_json(step.wait_json)
    return waiting if waiting.kind == "retry" else None


@dataclass(frozen=True)
class _Backoff:
    """Retries of one step: exponential backoff with equal jitter, capped at ``max_delay``; only the
    ``retry_on`` exceptions (all when ``None``); each call within ``timeout`` seconds when given."""

    max_retries: int
    base_delay: float
    max_delay: float
    retry_on: tuple[type[BaseException], ...] | None = None
    timeout: float | None = None

    def retries(self, error: Exception) -> bool:
        """Whether a call that failed with ``error`` is retried."""
        return self.retry_on is None or isinstance(error, self.retry_on)

    def pause(self, call: int) -> float:
        """Seconds to wait after failed call number ``call`` (1-based)."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (call - 1))
        # Equal jitter: at least half the backoff, so retries never bunch up at zero.
        return delay / 2 + _random.uniform(0, delay / 2)


_ONCE = _Backoff(0, 0.0, 0.0)


def _child_options(
    key: str, workflow: Any, run_timeout_seconds: Any, initial_state: Any, queue_json: str | None = None
) -> RunOptions | None:
    """A child run's invoke arguments, checked here (``initial_state`` against the schema of a workflow
    given as an object; by the child's worker otherwise); ``queue_json`` from :func:`_queueing`."""
    from polos.definition import Workflow, run_timeout_problem
    from polos.runtime.runs import RunOptions

    if run_timeout_seconds is None and initial_state is None and queue_json is None:
        return None
    if (problem := run_timeout_problem(run_timeout_seconds)) is not None:
        raise StepArgumentError(f"step {key!r}: {problem}")
    if isinstance(initial_state, BaseModel):
        initial_state = initial_state.model_dump(mode="json")
    if isinstance(workflow, Workflow):
        initial_state = workflow.check_initial_state(initial_state)
    elif initial_state is not None and not isinstance(initial_state, dict):
        raise StepArgumentError(f"step {key!r}: initial_state must be a dict or a pydantic model")
    text = (
        None if initial_state is None else serde.to_json(initial_state, what=f"initial_state of step {key!r}")
    )
    return RunOptions(run_timeout_seconds=run_timeout_seconds, initial_state_json=text, queue_json=queue_json)


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (async functions, partials of them, async ``__call__``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _cause_of(exc: BaseException) -> ErrorInfo:
    """What a failed step shows: the step function's own exception when it was wrapped."""
    if isinstance(exc, StepExecutionError) and exc.__cause__ is not None:
        return ErrorInfo.of(exc.__cause__)
    return ErrorInfo.of(exc)


def _queueing(key: str, name: str | None, limit: int | None, concurrency_key: str | None) -> str | None:
    """A child's queue arguments as its run keeps them (checked like the HTTP API checks them)."""
    from polos import queues

    problem = (None if name is None else queues.name_problem(name)) or queues.limit_problem(
        limit, "queue_concurrency_limit"
    )
    if concurrency_key is not None and (
        not isinstance(concurrency_key, str) or not 1 <= len(concurrency_key) <= queues.MAX_KEY_LENGTH
    ):
        problem = (
            f"concurrency_key={concurrency_key!r} must be a string of 1 to {queues.MAX_KEY_LENGTH} characters"
        )
    if problem is not None:
        raise StepArgumentError(f"step {key!r}: {problem}")
    asked = {"name": name, "limit": limit, "key": concurrency_key}
    return json.dumps(asked) if any(value is not None for value in asked.values()) else None

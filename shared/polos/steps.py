"""``ctx.step``: the durable step API a workflow author calls, as a protocol (the runtime implements it).

Every method takes a step key first; keys are unique within a run (reusing one is a clear error). A step's
outcome is journaled under its key, so a later attempt of the same run returns it without doing the work
again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from polos.client import ExecutionHandle
    from polos.payloads import EventItem, EventPayload
    from polos.types.types import BatchStepResult, BatchWorkflowInput


class StepAPI(Protocol):
    """What ``ctx.step`` offers a workflow: journaled calls, durable waits and child runs."""

    async def run(
        self,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        max_retries: int = 2,
        base_delay: float = 1.0,
        max_delay: float = 10.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        **kwargs: Any,
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` (sync or async) once per run and return its result.

        Failed calls are retried, ``max_retries`` times after the first, with exponential backoff and
        jitter from ``base_delay`` up to ``max_delay`` seconds; then ``StepExecutionError`` (the cause
        chained). A pause over 10 s is a durable wait (the run is ``waiting``, ``waiting_for`` kind
        ``retry``; nothing runs or is billed meanwhile, and it spends none of the run's ``max_attempts``).
        With ``retry_on`` (exception classes) only those are retried, others fail the step at once;
        ``NonRetryableError`` is never retried. ``timeout`` (seconds) fails a call that runs longer with
        ``StepTimeoutError`` (an async function is cancelled, a sync one's result ignored). The result is
        journaled and every replay returns it rebuilt as ``fn``'s return annotation declares (pydantic
        models, dataclasses, ...). It must be JSON-serialisable and at most 350 KB serialised.
        """
        ...

    async def publish_event(
        self, key: str, topic: str, data: dict[str, Any], event_type: str | None = None
    ) -> EventItem:
        """Publish one event to ``topic`` as the HTTP API does and return it as stored; however often the
        run replays, the event is stored once."""
        ...

    async def uuid(self, key: str) -> str:
        """A random UUID (string), the same on every replay."""
        ...

    async def now(self, key: str) -> int:
        """The current time in milliseconds since the epoch (as the official SDK), the same on every
        replay (``datetime.fromtimestamp(ms / 1000, UTC)`` for a datetime)."""
        ...

    async def random(self, key: str) -> float:
        """A random float in [0, 1), the same on every replay."""
        ...

    async def wait_for(
        self,
        key: str,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
    ) -> None:
        """Wait durably this long (in all at most 365 days): the run ends its attempt, holding nothing,
        and resumes after it. Waits of up to 10 s may sleep in the attempt."""
        ...

    async def wait_until(self, key: str, timestamp: datetime) -> None:
        """Wait durably until ``timestamp`` (aware; naive means UTC; at most 365 days ahead); a past time
        returns at once."""
        ...

    async def wait_for_event(
        self,
        key: str,
        topic: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the official SDK's name: a durable timeout
        *,
        event_type: str | None = None,
        match: dict[str, Any] | None = None,
    ) -> EventPayload:
        """The first event on ``topic`` published after this step was first reached, of ``event_type``
        when given, whose ``data`` holds every key/value of ``match``. ``StepExecutionError`` when
        ``timeout`` seconds pass first."""
        ...

    async def suspend(
        self,
        key: str,
        data: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Pause until resumed (``POST /api/v1/runs/{run_id}/resume``, ``PolosClient.resume``, or a
        ``resume_<key>`` event on ``workflow/<workflow_id>/<run_id>``) and return the resume's data.
        ``data`` is shown with the waiting step; ``StepExecutionError`` when ``timeout`` s pass first."""
        ...

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
        """Start a child run of ``workflow`` (a workflow or its id) once, however often this run replays,
        and return its handle. Inside a workflow the handle is data: wait with ``invoke_and_wait``.
        ``run_timeout_seconds`` and ``initial_state`` are the child's, as in ``Workflow.invoke``;
        ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key``: the child's queue."""
        ...

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
        """Start a child run once and wait for it durably: its result (typed as the child's return
        annotation when ``workflow`` is the workflow object), or ``StepExecutionError`` when it failed,
        was cancelled or ``timeout`` seconds passed first. ``run_timeout_seconds`` and ``initial_state``
        are the child's, as in ``Workflow.invoke``."""
        ...

    async def batch_invoke(self, key: str, workflows: list[BatchWorkflowInput]) -> list[ExecutionHandle]:
        """Start up to 1,000 child runs (``BatchWorkflowInput(id=workflow_id, payload=...)``) once, however
        often the run replays; their handles, in input order."""
        ...

    async def batch_invoke_and_wait(
        self, key: str, workflows: list[BatchWorkflowInput]
    ) -> list[BatchStepResult]:
        """Start up to 1,000 child runs once and wait for all of them with one durable wait (the run
        resumes once, after the last one ended); one ``BatchStepResult`` (``workflow_id``, ``success``,
        ``result``, ``error``) per child, in input order. Cancelling the run cancels the children."""
        ...

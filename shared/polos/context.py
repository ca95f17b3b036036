"""``WorkflowContext`` and its durable step methods."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import random as _random
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger, Tracer

from polos import serde
from polos.errors import (
    NonRetryableError,
    RunLeaseLostError,
    StepExecutionError,
    StepKeyReusedError,
)
from polos.journal import now_iso
from polos.payloads import EventItem
from polos.records import ErrorInfo, StepRecord
from polos.topics import canonical_topic

if TYPE_CHECKING:
    from polos.journal import Journal

logger = Logger(service="polos")
tracer = Tracer(service="polos")

MAX_STEP_KEY_LENGTH = 512
# Stop before calling a step when the lease has less than this left: the next attempt may start then.
LEASE_SAFETY_SECONDS = 5.0


class StepHooks(Protocol):
    """Failure injection points (``polos.testing`` sets them; production leaves them unset)."""

    def before_call(self, run_id: str, key: str, call: int) -> None: ...

    def after_journal(self, run_id: str, key: str) -> None: ...


_hooks: StepHooks | None = None


def set_step_hooks(hooks: StepHooks | None) -> None:
    """Install (or remove, with ``None``) the process-wide failure injection hooks."""
    global _hooks
    _hooks = hooks


class StepRunner:
    """``ctx.step``: every method journals its result under a key unique within the run."""

    def __init__(
        self,
        *,
        run_id: str,
        journal: Journal,
        steps: list[StepRecord],
        lease_until: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._run_id = run_id
        self._journal = journal
        self._journaled = {step.key: step for step in steps}
        self._next_index = max((step.index for step in steps), default=-1) + 1
        self._used: set[str] = set()
        self._lease_until = lease_until
        self._sleep = sleep

    async def run(
        self,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        max_retries: int = 2,
        base_delay: float = 1.0,
        max_delay: float = 10.0,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once per run (retried in-process), journal and return its result."""
        if not callable(fn):
            raise TypeError(f"step {key!r}: fn must be callable, got {type(fn).__name__}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"step {key!r}: max_retries must be an integer >= 0, got {max_retries!r}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError(f"step {key!r}: base_delay and max_delay must be >= 0")
        return await self._durable(key, fn, args, kwargs, max_retries, base_delay, max_delay)

    async def publish_event(
        self, key: str, topic: str, data: dict[str, Any], event_type: str | None = None
    ) -> EventItem:
        """Publish one event like the HTTP API does; stored once however often the run is replayed."""
        canonical = canonical_topic(topic)
        # A deterministic client-given id: the event store keeps one event per id and topic.
        event_id = "evt_" + hashlib.sha256(f"{self._run_id}\x00{key}".encode()).hexdigest()[:26]

        def publish() -> EventItem:
            from polos.publishing import NewEvent, publish_events  # the publish side loads on first use

            result = publish_events(canonical, [NewEvent(id=event_id, data=data, event_type=event_type)])
            return result.events[0]

        return await self._durable(key, publish, (), {}, 2, 0.2, 2.0, result_type=EventItem)  # type: ignore[no-any-return]

    async def uuid(self, key: str) -> str:
        """A random UUID (string), the same on every replay."""
        return await self._durable(key, lambda: str(_uuid.uuid4()), (), {}, 0, 0, 0, result_type=str)  # type: ignore[no-any-return]

    async def now(self, key: str) -> datetime:
        """The current UTC time, the same on every replay."""
        return await self._durable(key, lambda: datetime.now(UTC), (), {}, 0, 0, 0, result_type=datetime)  # type: ignore[no-any-return]

    async def random(self, key: str) -> float:
        """A random float in [0, 1), the same on every replay."""
        return await self._durable(key, _random.random, (), {}, 0, 0, 0, result_type=float)  # type: ignore[no-any-return]

    def _claim_key(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise StepKeyReusedError(f"step key must be a non-empty string, got {key!r}")
        if len(key) > MAX_STEP_KEY_LENGTH:
            raise StepKeyReusedError(f"step key {key[:40]!r}… is longer than {MAX_STEP_KEY_LENGTH} characters")
        if key in self._used:
            raise StepKeyReusedError(f"step key {key!r} is used twice in run {self._run_id}; keys must be unique")
        self._used.add(key)

    async def _durable(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        max_retries: int,
        base_delay: float,
        max_delay: float,
        result_type: Any = None,
    ) -> Any:
        self._claim_key(key)
        declared = result_type if result_type is not None else serde.declared_type(fn)
        previous = self._journaled.get(key)
        if previous is not None and previous.status == "completed" and previous.result_json is not None:
            logger.debug("step replayed from the journal", extra={"step_key": key})
            return serde.from_json(previous.result_json, declared or serde.resolve_tag(previous.result_tag))
        if time.time() > self._lease_until - LEASE_SAFETY_SECONDS:
            raise RunLeaseLostError(f"run {self._run_id}: lease about to lapse before step {key!r}")
        index = previous.index if previous is not None else self._claim_index()
        prior_calls = previous.attempts if previous is not None else 0
        started_at = now_iso()
        with tracer.provider.in_subsegment(f"## step {key}") as subsegment:
            subsegment.put_annotation("step_key", key)
            try:
                value, calls = await self._call_with_retries(key, fn, args, kwargs, max_retries, base_delay, max_delay)
                text = serde.to_json(value, what=f"result of step {key!r}")
            except BaseException as exc:
                calls = getattr(exc, "_polos_calls", 1)
                if isinstance(exc, Exception):
                    await self._journal_step(
                        StepRecord(key, index, "failed", prior_calls + calls, started_at, now_iso(), error=_cause_of(exc))
                    )
                raise
        tag = None if declared is not None else serde.type_tag(value)
        await self._journal_step(
            StepRecord(key, index, "completed", prior_calls + calls, started_at, now_iso(), text, tag)
        )
        return serde.from_json(text, declared or serde.resolve_tag(tag))

    def _claim_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    async def _journal_step(self, step: StepRecord) -> None:
        await asyncio.to_thread(self._journal.record_step, self._run_id, step)
        if _hooks is not None:
            _hooks.after_journal(self._run_id, step.key)

    async def _call_with_retries(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        max_retries: int,
        base_delay: float,
        max_delay: float,
    ) -> tuple[Any, int]:
        for call in range(1, max_retries + 2):
            try:
                if _hooks is not None:
                    _hooks.before_call(self._run_id, key, call)
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                return value, call
            except NonRetryableError as exc:
                exc._polos_calls = call  # type: ignore[attr-defined]
                raise
            except Exception as exc:
                if call > max_retries:
                    failure = StepExecutionError(key, call, exc)
                    failure._polos_calls = call  # type: ignore[attr-defined]
                    raise failure from exc
                delay = min(max_delay, base_delay * 2 ** (call - 1))
                # Equal jitter: at least half the backoff, so retries never bunch up at zero.
                pause = delay / 2 + _random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography
                logger.warning(
                    "step call failed; retrying",
                    extra={"step_key": key, "call": call, "retry_in_s": round(pause, 3), "error": repr(exc)},
                )
                await self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover


def _cause_of(exc: BaseException) -> ErrorInfo:
    """What a failed step shows: the step function's own exception when it was wrapped."""
    if isinstance(exc, StepExecutionError) and exc.__cause__ is not None:
        return ErrorInfo.of(exc.__cause__)
    return ErrorInfo.of(exc)


@dataclass
class WorkflowContext:
    """What a workflow handler gets besides its payload."""

    workflow_id: str
    run_id: str
    attempt: int
    created_at: datetime
    step: StepRunner

"""``ctx.step.run(..., retry_on=, timeout=)`` and backoff delays over 10 s as durable waits (the run is
``waiting`` with ``waiting_for {"kind": "retry"}``; such waits never spend ``max_attempts``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from polos import WorkflowContext, workflow
from polos.app import App
from polos.runtime import clock
from polos.testing import local_stack

called_at: list[float] = []


def fails_with(kind: type[Exception], times: int) -> Any:
    def call() -> str:
        called_at.append(clock.now())
        if len(called_at) <= times:
            raise kind(f"call {len(called_at)} fails")
        return "ok"

    return call


async def slow_async() -> str:
    called_at.append(clock.now())
    await asyncio.sleep(30)
    return "late"


def slow_sync() -> str:
    called_at.append(clock.now())
    time.sleep(0.5)
    return "late"


@workflow(id="sr-retry-on")
async def retry_on(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    kind = {"value": ValueError, "key": KeyError}[payload["raise"]]
    result: str = await ctx.step.run(
        "pick", fails_with(kind, 2), max_retries=3, base_delay=0.01, retry_on=(ValueError,)
    )
    return result


@workflow(id="sr-timeout")
async def timed(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    fn = slow_async if payload["async"] else slow_sync
    result: str = await ctx.step.run("slow", fn, max_retries=1, base_delay=0.01, timeout=0.1)
    return result


@workflow(id="sr-durable")
async def durable(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    result: str = await ctx.step.run(
        "charge", fails_with(RuntimeError, payload["fails"]), max_retries=3, base_delay=24, max_delay=24
    )
    return result


APP = App("step-retries", [retry_on, timed, durable])


def setup_function() -> None:
    called_at.clear()


def test_retry_on_retries_only_the_named_exceptions() -> None:
    with local_stack(APP, max_attempts=1) as stack:
        retried = stack.invoke("sr-retry-on", {"raise": "value"})
        stack.drain()
        assert stack.run(retried)["status"] == "completed" and len(called_at) == 3
        called_at.clear()
        refused = stack.invoke("sr-retry-on", {"raise": "key"})
        stack.drain()
        run = stack.run(refused)
        assert run["status"] == "failed" and len(called_at) == 1, (run, called_at)  # not retried
        (step,) = run["steps"]
        assert step["attempts"] == 1 and step["error"]["type"] == "KeyError", step


def test_a_call_over_its_timeout_fails_async_cancelled_and_sync_ignored() -> None:
    with local_stack(APP, max_attempts=1) as stack:
        for is_async in (True, False):
            called_at.clear()
            started = time.monotonic()
            run_id = stack.invoke("sr-timeout", {"async": is_async})
            stack.drain()
            run = stack.run(run_id)
            assert run["status"] == "failed", run
            assert len(called_at) == 2 and time.monotonic() - started < 10  # two calls, none waited 30 s
            (step,) = run["steps"]
            assert step["error"]["type"] == "StepTimeoutError" and step["attempts"] == 2, step


def test_a_backoff_over_10_s_is_a_durable_wait_that_spends_no_attempt() -> None:
    with local_stack(APP, max_attempts=1) as stack:
        run_id = stack.invoke("sr-durable", {"fails": 2})
        stack.drain()
        run = stack.run(run_id)
        assert run["status"] == "waiting" and len(called_at) == 1, run
        assert run["waiting_for"]["kind"] == "retry" and run["waiting_for"]["step"] == "charge", run
        (step,) = run["steps"]
        assert step["status"] == "waiting" and step["attempts"] == 1, step
        assert step["last_error"] == {"type": "RuntimeError", "message": "call 1 fails"}, step
        assert step["next_attempt_at"] == run["waiting_for"]["until"], step
        stack.advance(seconds=11)  # the shortest backoff is 12 s: not due yet
        stack.drain()
        assert len(called_at) == 1 and stack.run(run_id)["status"] == "waiting"
        stack.advance(seconds=13)
        stack.drain()
        assert len(called_at) == 2 and called_at[1] - called_at[0] >= 12, called_at
        assert stack.run(run_id)["status"] == "waiting"  # failed again: a second durable wait
        stack.advance(seconds=24)
        stack.drain()
        run = stack.run(run_id)
        # three calls, two failures, with max_attempts=1: the waits spent none of the run's executions
        assert run["status"] == "completed" and run["result"] == "ok" and len(called_at) == 3, run
        (step,) = run["steps"]
        assert step["attempts"] == 3 and step["next_attempt_at"] is None, step
        assert step["last_error"] == {"type": "RuntimeError", "message": "call 2 fails"}, step

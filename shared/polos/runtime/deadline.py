"""Run timeouts (``run_timeout_seconds``): a run unfinished that long after its creation fails with
``RunTimeout``.

The deadline is the run's ``created_at`` plus its invoke argument ``run_timeout_seconds`` (stored on the run
item), else the workflow's option. An attempt checks it before it runs anything and runs the handler no
longer than the time left (:func:`within`); a run that waits carries it in its ``waiting_for``
(``WaitingFor.deadline``), so its wake-up timer fires at the deadline at the latest (a durable timer, no
polling) and that attempt fails it. A run between two deliveries (a failed attempt, SQS's visibility
timeout) is failed by its next delivery. A single-event run's ``created_at`` is its event's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from polos.runtime import clock
from polos.runtime.records import ErrorInfo
from polos.timestamps import parse_utc_iso

if TYPE_CHECKING:
    from polos.definition import Workflow
    from polos.runtime.records import RunRecord

RUN_TIMEOUT = "RunTimeout"
_T = TypeVar("_T")


class RunTimedOut(BaseException):
    """The handler ran past the run's deadline (a BaseException: a workflow's ``except Exception`` cannot
    swallow it)."""


def deadline(run: RunRecord, workflow: Workflow) -> float | None:
    """The run's deadline (epoch seconds), or ``None`` when it has no timeout."""
    seconds = run.run_timeout_seconds or workflow.run_timeout_seconds
    if seconds is None or not run.created_at:
        return None
    return parse_utc_iso(run.created_at).timestamp() + seconds


def passed(moment: float | None) -> bool:
    return moment is not None and clock.now() >= moment


def error(run: RunRecord, workflow: Workflow) -> ErrorInfo:
    seconds = run.run_timeout_seconds or workflow.run_timeout_seconds
    return ErrorInfo(
        RUN_TIMEOUT,
        f"run {run.run_id} did not finish within run_timeout_seconds={seconds} of its creation "
        f"({run.created_at})",
    )


def timed_out(run: RunRecord) -> bool:
    """Whether a finished run failed at its deadline."""
    return run.status == "failed" and run.error is not None and run.error.type == RUN_TIMEOUT


async def within(moment: float | None, work: Coroutine[Any, Any, _T]) -> _T:
    """Await ``work`` until ``moment`` at the latest: then it is cancelled and ``RunTimedOut`` raised."""
    if moment is None:
        return await work
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=max(moment - clock.now(), 0.0))
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):  # whatever the cancelled handler raises, the run timed out
        await asyncio.wait_for(task, timeout=1.0)
    raise RunTimedOut

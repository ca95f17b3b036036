"""Which run the AWS requests of the current task are made for (``polos dev`` prices each run by it).

The worker names the run when it binds a run's log keys (:func:`polos.aws.observability.bind_run`); a context
variable, so each run's task (and the threads it hands boto3 calls to) carries its own. Nothing in the
runtime reads it: under ``polos dev`` the local stack's meter does, to add each request to its run's cost.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class RunRef:
    run_id: str
    workflow_id: str


_CURRENT: ContextVar[RunRef | None] = ContextVar("polos_run", default=None)


def attribute(run_id: str, workflow_id: str) -> None:
    """The current task's requests are made for this run from now on."""
    _CURRENT.set(RunRef(run_id, workflow_id))


def current_run() -> RunRef | None:
    """The run the current task works for (``None`` outside any)."""
    return _CURRENT.get()


def concurrently(call: Callable[[_T], _R], items: Sequence[_T], limit: int) -> list[_R]:
    """``call`` on each of ``items``, at most ``limit`` at once, each in a copy of this context (so its
    requests count for the current run); the answers in order, the first error raised once all ended."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        sent = [pool.submit(contextvars.copy_context().run, call, item) for item in items]
        return [future.result() for future in sent]

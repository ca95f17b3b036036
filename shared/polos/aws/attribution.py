"""Which run the AWS requests of the current task are made for (``polos dev`` prices each run by it).

The worker names the run when it binds a run's log keys (:func:`polos.aws.observability.bind_run`); a context
variable, so each run's task (and the threads it hands boto3 calls to) carries its own. Nothing in the
runtime reads it: under ``polos dev`` the local stack's meter does, to add each request to its run's cost.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


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

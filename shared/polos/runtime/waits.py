"""Waiting runs: what a run waits for, and the one rule that says when a wait is over.

A wait is a step. Reaching it journals the step as ``waiting`` with a :class:`WaitingFor`; the attempt then
ends with the run ``waiting`` (see :class:`RunSuspended`), holding no Lambda, receive or poll. A wake-up
puts a ``resume`` message on the workflow's queue; the next attempt replays the journal and the waiting
step asks :func:`is_due` whether it may complete. Every kind of wait goes through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from polos.payloads import utc_iso

WaitKind = Literal["timer"]
# Waits this short (seconds left) sleep inside the attempt instead of ending it.
IN_ATTEMPT_MAX_SECONDS = 10.0
MAX_WAIT_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class WaitingFor:
    """What the waiting step ``step`` waits for: a timer until ``until`` (epoch seconds)."""

    step: str
    kind: WaitKind
    until: float | None = None

    def to_json(self) -> str:
        return json.dumps({"step": self.step, "kind": self.kind, "until": self.until}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> WaitingFor:
        raw = json.loads(text)
        return cls(step=raw["step"], kind=raw["kind"], until=raw.get("until"))

    def view(self) -> dict[str, Any]:
        """As the runs API shows it: ``{"step", "kind", "until"?}`` with ``until`` an ISO UTC time."""
        shown: dict[str, Any] = {"step": self.step, "kind": self.kind}
        if self.until is not None:
            shown["until"] = utc_iso(datetime.fromtimestamp(self.until, UTC))
        return shown


def is_due(waiting: WaitingFor, now: float) -> bool:
    """Whether the wait is over at ``now``: the one place that turns a waiting run runnable."""
    return waiting.until is not None and now >= waiting.until


class RunSuspended(BaseException):
    """Ends the attempt with the run ``waiting`` (a BaseException, so ``except Exception`` in a workflow
    cannot swallow it). Raised by a wait step after it journaled itself as ``waiting``."""

    def __init__(self, waiting: WaitingFor) -> None:
        super().__init__(f"run waits: {waiting.kind} of step {waiting.step!r}")
        self.waiting = waiting

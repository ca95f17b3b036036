"""Waiting runs: what a run waits for, and the one rule that says when a wait is over.

A wait is a step. Reaching it journals the step as ``waiting`` with a :class:`WaitingFor`; the attempt then
ends with the run ``waiting`` (see :class:`RunSuspended`), holding no Lambda, receive or poll. A wake-up
puts a ``resume`` message on the workflow's queue; the next attempt replays the journal and the waiting
step asks :func:`is_due` whether it may complete. Every kind of wait goes through this module.

Kinds: ``timer`` (``wait_for``/``wait_until``: over at ``until``), ``event`` (``wait_for_event``), ``resume``
(``suspend``: an event of type ``resume_<key>`` on the run's own topic, or the resume route) and ``child``
(``invoke_and_wait``, ``batch_invoke_and_wait``); ``retry`` (a step's backoff over 10 s: over at
``until``, like a timer). For ``event``, ``resume`` and ``child``, ``until`` is the optional timeout, and
whatever completes the wait (a matched event, a resume call, the child's end) records the step's result
on the waiting step item itself, conditionally (only while it is still ``waiting``: exactly one completer
wins), then sends the run a ``resume`` message (see :mod:`polos.runtime.completion`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from polos.payloads import utc_iso

if TYPE_CHECKING:
    from polos.runtime.records import StepRecord

WaitKind = Literal["timer", "event", "resume", "child", "retry", "concurrency"]
# Waits this short (seconds left) sleep inside the attempt instead of ending it.
IN_ATTEMPT_MAX_SECONDS = 10.0
MAX_WAIT_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class WaitingFor:
    """What the waiting step ``step`` waits for; ``until`` (epoch seconds) ends a timer, or times out
    the other kinds. ``topic``/``event_type``/``match`` describe the event awaited, ``child`` the child."""

    step: str
    kind: WaitKind
    until: float | None = None
    topic: str | None = None
    event_type: str | None = None
    match: dict[str, Any] | None = None
    child: str | None = None
    # ``event``/``resume``: the topic's last sequence id when the step was first reached.
    after: int | None = None
    # ``event``/``resume``, on the run's copy only: when to look back once more for events whose sequence
    # ids were reserved before the waiter was registered but not yet stored (see polos.publish.waiters),
    # or to register an untimed wait again; the look-back's ``checked`` (every id up to it seen) and
    # ``reserved`` (the anchor it read up to): a recheck reads only the ids between them.
    recheck: float | None = None
    # On the run's copy only: when to wake the run to keep what it reads past the retention, should it still
    # wait then (see polos.runtime.retention).
    keep: float | None = None
    checked: int | None = None
    reserved: int | None = None
    # On the run's copy only: the run's ``run_timeout_seconds`` deadline (epoch s), when it fails with
    # ``RunTimeout`` wherever it waits (see polos.runtime.deadline).
    deadline: float | None = None
    # ``batch_invoke_and_wait`` (``child``) / ``batch_invoke``: how many children the step started.
    children: int | None = None
    # ``concurrency`` (a ``queued`` run over its queue's limit, see polos.runtime.slots): the queue and key.
    queue: str | None = None
    key: str | None = None

    @property
    def wake_at(self) -> float | None:
        """When the run must be woken whatever happens: the first of ``until``, ``recheck``, ``keep`` and
        ``deadline``."""
        moments = (self.until, self.recheck, self.keep, self.deadline)
        times = [moment for moment in moments if moment is not None]
        return min(times) if times else None

    def to_json(self) -> str:
        raw: dict[str, Any] = {"step": self.step, "kind": self.kind, "until": self.until}
        extra = {
            "topic": self.topic,
            "event_type": self.event_type,
            "match": self.match,
            "child": self.child,
            "children": self.children,
            "after": self.after,
            "recheck": self.recheck,
            "keep": self.keep,
            "checked": self.checked,
            "reserved": self.reserved,
            "deadline": self.deadline,
            "queue": self.queue,
            "key": self.key,
        }
        raw.update({name: value for name, value in extra.items() if value is not None})
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WaitingFor:
        raw = json.loads(text)
        return cls(
            step=raw["step"],
            kind=raw["kind"],
            until=raw.get("until"),
            topic=raw.get("topic"),
            event_type=raw.get("event_type"),
            match=raw.get("match"),
            child=raw.get("child"),
            children=raw.get("children"),
            after=raw.get("after"),
            recheck=raw.get("recheck"),
            keep=raw.get("keep"),
            checked=raw.get("checked"),
            reserved=raw.get("reserved"),
            deadline=raw.get("deadline"),
            queue=raw.get("queue"),
            key=raw.get("key"),
        )

    def view(self) -> dict[str, Any]:
        """As the runs API shows it: ``{"step", "kind", "until"?, "topic"?, "child"?}`` (ISO UTC time), or
        ``{"kind": "concurrency", "queue", "key"}``."""
        if self.kind == "concurrency":
            return {"kind": self.kind, "queue": self.queue, "key": self.key}
        shown: dict[str, Any] = {"step": self.step, "kind": self.kind}
        if self.until is not None:
            shown["until"] = utc_iso(datetime.fromtimestamp(self.until, UTC))
        if self.topic is not None:
            shown["topic"] = self.topic
        if self.child is not None:
            shown["child"] = self.child
        if self.children is not None:
            shown["children"] = self.children
        return shown


def is_due(waiting: WaitingFor, step: StepRecord | None, now: float) -> bool:
    """Whether the wait is over at ``now``: the one place that turns a waiting run runnable.

    Over when a completer recorded the step's result (``step`` is the journaled waiting step), or when
    ``until`` passed (a timer's time, or another kind's timeout), or when a ``recheck`` is due (the
    attempt looks back once more and, finding nothing, waits again), or a ``keep`` (the attempt keeps what
    the run reads past the retention and waits again), or the run's ``deadline`` (the attempt fails it).
    """
    if step is not None and step.status != "waiting":
        return True
    wake_at = waiting.wake_at
    return wake_at is not None and now >= wake_at


class RunSuspended(BaseException):
    """Ends the attempt with the run ``waiting`` (a BaseException, so ``except Exception`` in a workflow
    cannot swallow it). Raised by a wait step after it journaled itself as ``waiting``."""

    def __init__(self, waiting: WaitingFor) -> None:
        super().__init__(f"run waits: {waiting.kind} of step {waiting.step!r}")
        self.waiting = waiting


class RunCancelled(BaseException):
    """Ends the attempt with the run ``cancelled``: raised at a step boundary once a cancel was asked for
    (a BaseException, so a workflow's ``except Exception`` cannot swallow it)."""

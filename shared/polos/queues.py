"""Queues: ``Queue(name, concurrency_limit)`` and ``queue(...)``, and the rules a queue option must keep.

At most ``concurrency_limit`` runs of one queue execute at once (per ``concurrency_key`` value when the
workflow or the caller gives one); the slots are kept by :mod:`polos.runtime.slots`. Queues are known by
name: a ``Queue`` declares its limit once per process, and ``@workflow(queue="name")`` (or an invoke's
``queue_name``) finds it by that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polos.errors import WorkflowDefinitionError

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_LENGTH = 256
# A dotted path into the event: ``data.customer_id`` (segments of letters, digits, ``_`` and ``-``).
KEY_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
# The event source mapping's ScalingConfig.MaximumConcurrency range.
MIN_MAX_CONCURRENCY = 2
MAX_MAX_CONCURRENCY = 1000

_declared: dict[str, int | None] = {}


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a queue name (``None`` when it is one)."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        return f"queue name {name!r} is invalid: it must match {QUEUE_NAME.pattern}"
    return None


def limit_problem(limit: object, what: str = "concurrency_limit") -> str | None:
    """Why ``limit`` is not a concurrency limit (``None`` when it is one, or absent)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        return f"{what}={limit!r} is invalid: it must be an integer, 1 <= {what} <= {MAX_CONCURRENCY_LIMIT}"
    return None


@dataclass(frozen=True)
class Queue:
    """A named queue; ``concurrency_limit`` runs of it execute at once (``None``: no limit)."""

    name: str
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        problem = name_problem(self.name) or limit_problem(self.concurrency_limit)
        if problem is not None:
            raise WorkflowDefinitionError(problem)
        known = _declared.get(self.name)
        if known is not None and self.concurrency_limit is not None and known != self.concurrency_limit:
            raise WorkflowDefinitionError(
                f"queue {self.name!r} is declared with concurrency_limit={known} already; "
                f"concurrency_limit={self.concurrency_limit} contradicts it (one limit per queue)"
            )
        if self.concurrency_limit is not None or self.name not in _declared:
            _declared[self.name] = self.concurrency_limit


def queue(name: str, concurrency_limit: int | None = None) -> Queue:
    """The official SDK's spelling of :class:`Queue`."""
    return Queue(name, concurrency_limit)


def declared_limit(name: str) -> int | None:
    """The limit a ``Queue`` of this name declared in this process (``None``: none)."""
    return _declared.get(name)


def resolve(wf_id: str, option: Any) -> Queue | None:
    """``@workflow(queue=...)`` as a :class:`Queue`: a name, a ``Queue``, or ``{"concurrency_limit": N}``
    (a queue of the workflow's own, named after it)."""
    if option is None or isinstance(option, Queue):
        return option
    if isinstance(option, str):
        problem = name_problem(option)
        if problem is not None:
            raise WorkflowDefinitionError(f"workflow {wf_id!r}: queue: {problem}")
        return Queue(option, declared_limit(option))
    if isinstance(option, dict):
        unknown = sorted(set(option) - {"concurrency_limit"})
        if unknown or "concurrency_limit" not in option:
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: queue={option!r} is invalid: a dict must be exactly "
                '{"concurrency_limit": N}'
            )
        problem = limit_problem(option["concurrency_limit"], "queue.concurrency_limit")
        if problem is not None:
            raise WorkflowDefinitionError(f"workflow {wf_id!r}: {problem}")
        return Queue(wf_id, option["concurrency_limit"])
    raise WorkflowDefinitionError(
        f"workflow {wf_id!r}: queue={option!r} is invalid: it must be a queue name, a Queue or "
        '{"concurrency_limit": N}'
    )


def check_options(
    wf_id: str,
    resolved: Queue | None,
    concurrency_key: object,
    max_concurrency: object,
    *,
    event: bool,
    batch: bool,
) -> None:
    """The rules of ``concurrency_key`` and ``max_concurrency`` (a clear error naming each)."""
    if concurrency_key is not None:
        if not isinstance(concurrency_key, str) or not KEY_PATH.fullmatch(concurrency_key):
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: concurrency_key={concurrency_key!r} is invalid: it must be a dotted "
                'path into the event, such as "data.customer_id"'
            )
        if not event or batch:
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: concurrency_key={concurrency_key!r} needs a single-event workflow "
                "(trigger_on_event, batch_size 1); an invoked run's key is the caller's concurrency_key="
            )
        if resolved is None:
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: concurrency_key={concurrency_key!r} needs a queue with a "
                'concurrency_limit (queue=Queue(name, N) or {"concurrency_limit": N})'
            )
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or not MIN_MAX_CONCURRENCY <= max_concurrency <= MAX_MAX_CONCURRENCY
    ):
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: max_concurrency={max_concurrency!r} is invalid: it must be an integer, "
            f"{MIN_MAX_CONCURRENCY} <= max_concurrency <= {MAX_MAX_CONCURRENCY} (the event source mapping's "
            "maximum concurrency)"
        )


def check_strict_order(
    wf_id: str, strict_order: object, resolved: Queue | None, *, event: bool, batch: bool, flow: bool
) -> None:
    """The rule of ``strict_order`` (a clear error naming it): a single-event workflow on a queue with a
    concurrency_limit, without debounce, throttle or rate_limit (which order their events themselves)."""
    if not isinstance(strict_order, bool):
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: strict_order={strict_order!r} is invalid: it must be True or False"
        )
    if not strict_order:
        return
    if not event or batch or flow or resolved is None or resolved.concurrency_limit is None:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: strict_order=True needs a single-event workflow (trigger_on_event, "
            "batch_size 1, no debounce, throttle or rate_limit) on a queue with a concurrency_limit "
            '(queue=Queue(name, N) or {"concurrency_limit": N}): it orders the starts of its event runs'
        )


def event_key(path: str | None, event: Any) -> str | None:
    """The concurrency key of an event: the value at ``path`` (dotted) in the event as JSON (``None`` when
    absent: the queue's keyless bucket)."""
    if path is None:
        return None
    value = event
    for segment in path.split("."):
        if not isinstance(value, dict) or segment not in value:
            return None
        value = value[segment]
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value) if isinstance(value, int | float) else str(value)
    return text[:MAX_KEY_LENGTH]

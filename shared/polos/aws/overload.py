"""Overload of our own AWS calls: the one exception it raises and the time an invocation may spend.

:mod:`polos.aws.retries` (installed on every client :mod:`polos.aws.settings` makes) retries a throttle or a
timeout within the time left and then raises :class:`InfrastructureThrottled`, so the code above tells an
infrastructure failure from its own errors and from the errors of a user's code (which calls AWS through
its own clients). Standard library only: :mod:`polos.errors` re-exports the exception.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

# What the HTTP API answers in ``Retry-After`` (seconds): DynamoDB's partition throttles clear within a
# second or two, and the client adds its own backoff and jitter.
RETRY_AFTER_SECONDS = 1


class InfrastructureThrottled(RuntimeError):
    """One of Polos's own AWS calls was throttled, or timed out, after its retries within the time left.

    An infrastructure failure, never the workflow's: the worker defers the message (a later delivery that
    spends none of the run's attempts) and never records it as the run's or a step's error; the HTTP API
    answers ``503`` with ``Retry-After``. ``operation`` names the AWS call, ``reason`` is ``throttled`` or
    ``timeout``.
    """

    def __init__(self, operation: str, reason: str, detail: str) -> None:
        super().__init__(f"AWS {operation} {reason}: {detail}")
        self.operation = operation
        self.reason = reason


# The lists of the watches (:func:`watch`) the current context is inside, innermost last.
_watches: contextvars.ContextVar[tuple[list[InfrastructureThrottled], ...]] = contextvars.ContextVar(
    "polos_aws_watches", default=()
)


@contextmanager
def watch() -> Iterator[list[InfrastructureThrottled]]:
    """Within the block, every :class:`InfrastructureThrottled` raised by our clients is also put in the
    yielded list (and in those of enclosing watches), even when code in between caught it: a worker
    attempt whose workflow swallowed one is still an infrastructure failure. Tasks and threads started
    in the block with its context (``asyncio.to_thread``, ``gather``) report to it too."""
    seen: list[InfrastructureThrottled] = []
    token = _watches.set((*_watches.get(), seen))
    try:
        yield seen
    finally:
        _watches.reset(token)


def noted(error: InfrastructureThrottled) -> InfrastructureThrottled:
    """``error``, reported to the current watches (for :mod:`polos.aws.retries` to raise)."""
    for seen in _watches.get():
        seen.append(error)
    return error


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("polos_aws_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Within the block, no AWS call starts an attempt (or a retry) that could end after ``seconds``
    from now; ``None`` sets no budget. Threads started with the context (``asyncio.to_thread``) share it."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left() -> float | None:
    """The time left in the current budget (``None``: no budget)."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def lambda_time_left(context: object, reserve: float) -> float | None:
    """A Lambda invocation's remaining time less ``reserve`` seconds (for its answer); ``None`` when
    ``context`` cannot say (a test calling a handler directly)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        millis = float(remaining())
    except (TypeError, ValueError):
        return None
    return max(0.0, millis / 1000 - reserve)

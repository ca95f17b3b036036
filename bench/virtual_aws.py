"""Virtual time for AWS calls: each thread has its own clock, each request advances it by AWS's latency.

A Lambda invocation that works on several threads spends its time on each at once; :class:`VirtualTime`
gives every thread a clock that starts where the invoking thread's clock stood and advances only by what
that thread's requests cost, so the real sweep code runs unchanged while minutes pass in milliseconds.
:class:`VirtualContext` is the Lambda context of one invocation (its remaining time read off the calling
thread's clock), and a request made past its deadline dies like the invocation would
(:class:`LambdaTimeout`). :func:`charged` applies the same to real (moto) boto3 clients.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext


class LambdaTimeout(BaseException):
    """The invocation reached its timeout: Lambda stops it, whatever it was doing (not catchable as an
    ``Exception``)."""


class VirtualTime:
    """Per-thread virtual clocks (seconds). Outside an invocation every thread reads :attr:`origin`."""

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        self._lock = threading.Lock()
        self._clocks: dict[int, float] = {}
        self._invoker: int | None = None
        self.deadline: float | None = None
        self.ended = origin

    def _read(self, thread: int) -> float:
        if thread in self._clocks:
            return self._clocks[thread]
        if self._invoker is not None:  # a thread the invocation started: it starts when the invoker is
            return self._clocks[self._invoker]
        return self.origin

    def now(self) -> float:
        with self._lock:
            return self._read(threading.get_ident())

    def spend(self, seconds: float) -> float:
        """Advance this thread's clock; :class:`LambdaTimeout` when that passes the invocation's deadline."""
        with self._lock:
            thread = threading.get_ident()
            moment = self._clocks[thread] = self._read(thread) + seconds
        if self.deadline is not None and moment > self.deadline:
            raise LambdaTimeout(f"the invocation timed out at {self.deadline:.1f} s (virtual)")
        return moment

    @contextlib.contextmanager
    def invocation(self, start: float, timeout: float) -> Iterator[VirtualContext]:
        """One invocation from ``start`` (virtual s) killed at ``start + timeout``; afterwards
        :attr:`ended` is when its last thread's last request ended."""
        with self._lock:
            self._clocks = {threading.get_ident(): start}
            self._invoker = threading.get_ident()
            self.deadline = start + timeout
        try:
            yield VirtualContext(self, start + timeout)
        finally:
            with self._lock:
                self.ended = max(self._clocks.values())
                self._clocks, self._invoker, self.deadline = {}, None, None
                self.origin = max(self.origin, self.ended)


class VirtualContext(LambdaContext):
    """The Lambda context of one virtual invocation: the time left on the calling thread's clock."""

    def __init__(self, time: VirtualTime, deadline: float) -> None:
        self._time = time
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return max(0, int((self._deadline - self._time.now()) * 1000))


@contextlib.contextmanager
def charged(clients: list[Any], time: VirtualTime, seconds: float) -> Iterator[None]:
    """Inside the block every request of the boto3 ``clients`` costs ``seconds`` of the calling thread's
    virtual time; one that would end past the invocation's deadline is never sent (the invocation died)."""

    def before(**_: Any) -> None:
        time.spend(seconds)

    unique = f"virtual-time-{id(time)}"
    for client in clients:
        client.meta.events.register("before-call.*.*", before, unique_id=unique)
    try:
        yield
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", unique_id=unique)

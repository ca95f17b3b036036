"""Which crash points a crash-injection test visits, and the same points on a slow machine.

Under ``POLOS_SOAK=1`` (``make soak``) every one; otherwise an even spread of at most :data:`DEFAULT_POINTS`,
always the first and the last, so that every phase (register, match, wake, resume, ...) is still hit while
the suite stays fast.

A crash test counts the AWS requests of a probe run, then crashes after the n-th request of fresh runs: the
runs must make the same requests however fast the machine is. One request depends on time: an attempt
reads its run's ``cancel_requested`` before a step call once its last look is ``CANCEL_CHECK_SECONDS`` old
(1 s). On a loaded machine a probe that stalled that long made one request more than the runs it measures,
so its last crash point lay past their end ("no crash happened at request N").
:func:`same_requests_at_any_speed` makes that read before every step call instead. Likewise a completed step
is journaled on its own once ``PENDING_FLUSH_SECONDS`` pass without a write of the attempt: it makes that
never happen (``tests/integration/test_pending_step_flush.py`` crashes around that write).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from polos.testing import Stack

SOAK = os.environ.get("POLOS_SOAK", "") not in ("", "0")
DEFAULT_POINTS = 12


def crash_points(total: int) -> list[int]:
    """The 1-based request numbers after which to crash, out of ``total``."""
    if SOAK or total <= DEFAULT_POINTS:
        return list(range(1, total + 1))
    step = (total - 1) / (DEFAULT_POINTS - 1)
    return sorted({1 + round(i * step) for i in range(DEFAULT_POINTS)})


def same_requests_at_any_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every attempt check for a cancel before each step call, whatever time has passed (see above):
    a run's requests no longer depend on the machine's speed, and the check's read is a crash point too."""
    from polos.runtime import steps

    monkeypatch.setattr(steps, "CANCEL_CHECK_SECONDS", -math.inf)
    monkeypatch.setattr(steps, "PENDING_FLUSH_SECONDS", math.inf)


def crashing(stack: Stack, crash_at: int | None, action: Callable[[], None], done: Callable[[], bool]) -> int:
    """Do ``action`` (retried like a client retries a request that died), then drain until ``done``,
    crashing after the ``crash_at``-th request; returns the number of requests made."""
    from polos.aws import settings

    from infra.metering.meter import Crash, Meter

    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    meter.crash_after(crash_at, where=lambda call: call.tag != "test")
    acted = False
    for _ in range(12):
        try:
            if not acted:
                action()
                acted = True
            stack.drain()
        except Crash:
            continue
        with meter.tag("test"):
            if done():
                break
    made = len([call for call in meter.calls if call.tag != "test"])
    meter.detach()
    assert not meter.crash_pending, f"no crash happened at request {crash_at}"
    return made

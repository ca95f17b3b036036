"""The time waits are measured against: the wall clock, which ``polos.testing`` may move forward.

Only waits read it (a wait's deadline, whether it is due, how long a timer delays its wake-up); leases and
timestamps keep the real clock. Skipping time in a test moves this clock and, with it, the local queues'.
"""

from __future__ import annotations

import time

_offset = 0.0


def now() -> float:
    """Seconds since the epoch, as waits see them."""
    return time.time() + _offset


def advance(seconds: float) -> None:
    """Move this process's wait clock forward (tests only: ``polos.testing``'s ``Stack.advance``)."""
    global _offset
    if seconds < 0:
        raise ValueError(f"time only moves forward; got {seconds} seconds")
    _offset += seconds


def reset() -> None:
    """Back to the wall clock."""
    global _offset
    _offset = 0.0

"""What the reliability tests share: their size, and a lease clock that can be moved forward."""

from __future__ import annotations

import os
import time

SOAK = os.environ.get("POLOS_SOAK", "") not in ("", "0")
_REAL_TIME = time.time


class ShiftedClock:
    """``time.time()`` for the run journal and leases, movable forward: a crashed attempt's lease lapses
    once the clock passes it, as it would after the worker's timeout."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return _REAL_TIME() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

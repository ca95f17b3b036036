"""Which crash points a crash-injection test visits.

Under ``POLOS_SOAK=1`` (``make soak``) every one; otherwise an even spread of at most :data:`DEFAULT_POINTS`,
always the first and the last, so that every phase (register, match, wake, resume, ...) is still hit while
the suite stays fast.
"""

from __future__ import annotations

import os

SOAK = os.environ.get("POLOS_SOAK", "") not in ("", "0")
DEFAULT_POINTS = 12


def crash_points(total: int) -> list[int]:
    """The 1-based request numbers after which to crash, out of ``total``."""
    if SOAK or total <= DEFAULT_POINTS:
        return list(range(1, total + 1))
    step = (total - 1) / (DEFAULT_POINTS - 1)
    return sorted({1 + round(i * step) for i in range(DEFAULT_POINTS)})

"""Reliability suite fixtures. ``POLOS_SOAK=1`` (``make soak``) runs every test at full size."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from reliability_support import ShiftedClock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmark harness (bench/) lives at the top of the repository


@pytest.fixture
def lease_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[ShiftedClock]:
    """The clock of the modules that take, check and compute leases, shifted together."""
    import polos.runtime.batches
    import polos.runtime.journal
    import polos.runtime.steps

    clock = ShiftedClock()
    shifted = SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    shifted.time = clock.time
    for module in (polos.runtime.journal, polos.runtime.steps, polos.runtime.batches):
        monkeypatch.setattr(module, "time", shifted)
    yield clock

"""Waiting for the state a test asserts: poll the condition itself, never a side effect that precedes it.

A side effect (a step's call, a counter) is recorded before the run's outcome is written; a test that waits
on it and then asserts the run's status races the worker on a busy machine. Wait for the asserted state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            last: Any = value
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)

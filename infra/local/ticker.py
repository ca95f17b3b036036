"""A function called every ``interval`` seconds on its own thread: the local stand-in for a schedule
(``polos dev`` sweeps the timers through the timers function once a second, as the cloud does each minute)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("polos.dev")


class Ticker:
    """Calls ``tick()`` every ``interval`` s until :meth:`stop`; a failing tick is logged, not fatal."""

    def __init__(self, name: str, tick: Callable[[], Any], interval: float = 1.0) -> None:
        self._tick = tick
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._tick()
            except Exception:
                logger.exception("%s failed; trying again in %s s", self._thread.name, self._interval)

    def stop(self, timeout: float) -> bool:
        """``False`` when a tick was still running at ``timeout``."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

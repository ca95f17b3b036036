"""``pollers``: several pollers per queue, as Lambda's event source mapping runs (5 and more), so one
workflow's function runs concurrently, also on the same run (with ``duplicates``).

``polos dev`` starts that many polling threads per queue (:class:`infra.local.mapping.Pollers`); a test's
``drain()`` runs that many draining threads (:func:`infra.local.mapping.drain`), and :class:`Quiesce`
lets it act between invocations when it must (moving every lease into the past as a skipped visibility
timeout would) while no invocation runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Quiesce:
    """Invocations run side by side; a pause waits for those running to end and holds new ones off."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._running = 0
        self._pausing = 0
        self._one_pause = threading.Lock()

    @contextmanager
    def invocation(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: self._pausing == 0)
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()

    @contextmanager
    def pause(self) -> Iterator[None]:
        with self._one_pause:
            with self._condition:
                self._pausing += 1
                self._condition.wait_for(lambda: self._running == 0)
            try:
                yield
            finally:
                with self._condition:
                    self._pausing -= 1
                    self._condition.notify_all()

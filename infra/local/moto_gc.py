"""The moto server process's garbage collector: survivors of a full collection are not scanned again.

moto keeps every stored item, queue and message as Python objects, so its process's heap grows with the
history ``polos dev`` stores (1.1 million tracked objects after the bench's 10,000 events). Each full
(generation 2) collection scans all of them, measured at 0.5-0.9 s per collection at that size, during
which the server answers nothing; it runs whenever the objects that survived younger collections grow by
a quarter, so the pauses grow with the history.

After each full collection, :func:`install`'s callback freezes what survived it (``gc.freeze``): those
objects live on, are still freed by reference counting when released, and later full collections scan only
what was allocated since. What it gives up: a reference cycle among frozen objects that becomes garbage
later is not collected (moto's items, queues and messages are released by reference counting; the rest is
a few objects of the requests in flight at each full collection). The server process alone installs it.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

_installed: list[Any] = []
_lock = threading.Lock()


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def install() -> None:
    """Freeze the survivors of every full collection from now on (idempotent)."""
    with _lock:
        if not _installed:
            gc.callbacks.append(_freeze_after_full_collection)
            _installed.append(_freeze_after_full_collection)


def uninstall() -> None:
    """Stop freezing and unfreeze what was frozen (idempotent)."""
    with _lock:
        if _installed:
            gc.callbacks.remove(_installed.pop())
            gc.unfreeze()


def installed() -> bool:
    return bool(_installed)

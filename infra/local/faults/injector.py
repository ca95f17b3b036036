"""The faults of one local stack at work: their seeded randomness and the count of each one injected."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import MutableSequence
from typing import TypeVar

from infra.local.faults.config import AwsFaults

logger = logging.getLogger(__name__)  # infra.local.faults.injector

T = TypeVar("T")


class Injector:
    """Decides, from one seeded generator, when a fault strikes; counts and logs (DEBUG) each one."""

    def __init__(self, faults: AwsFaults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)  # nosec B311: fault injection, not security
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def chance(self, rate: float | None) -> bool:
        """True with probability ``rate`` (never for ``None`` or 0)."""
        if not rate:
            return False
        with self._lock:
            return self._random.random() < rate

    def shuffle(self, items: MutableSequence[T]) -> None:
        with self._lock:
            self._random.shuffle(items)

    def pick(self, count: int) -> int:
        """A number from 0 to ``count - 1``."""
        with self._lock:
            return self._random.randrange(count)

    def injected(self, fault: str, detail: str) -> None:
        """Record one injected fault: a DEBUG line and its count."""
        with self._lock:
            self._counts[fault] += 1
        logger.debug("aws fault %s: %s", fault, detail)

    def counts(self) -> dict[str, int]:
        """Injected faults so far, by fault."""
        with self._lock:
            return dict(self._counts)

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{name} {counts[name]}" for name in sorted(counts)) or "none injected"

"""Failure injection around event waiters (``polos.publish.waiters``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from polos.publish import waiters
from polos.testing import Stack


@contextmanager
def published_before_the_waiter_registers(stack: Stack, topic: str, data: dict[str, Any]) -> Iterator[None]:
    """While active, every waiter registration first publishes ``data`` to ``topic``: the event lands after
    the step was reached and before its waiter is stored, so no publisher sees the waiter and only the
    waiter's look-back can find the event."""
    real = waiters.WaiterStore.register

    def publish_first(self: waiters.WaiterStore, waiter: waiters.Waiter, until: float | None) -> int:
        stack.publish(topic, [{"data": data}])
        return real(self, waiter, until)

    with mock.patch.object(waiters.WaiterStore, "register", publish_first):
        yield

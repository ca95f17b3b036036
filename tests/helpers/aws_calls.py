"""AWS call counting and crash injection through botocore event hooks on the runtime's clients."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from polos.aws import settings


class Crash(BaseException):
    """Stands for the process dying: ``except Exception`` does not catch it."""


def _clients() -> list[Any]:
    return [settings.dynamodb(), settings.sqs()]


@contextmanager
def count_calls() -> Iterator[Counter[str]]:
    """Count requests per service (``dynamodb``, ``sqs``) and per ``service.Operation``."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        counts[service] += 1
        counts[f"{service}.{model.name}"] += 1

    for client in _clients():
        client.meta.events.register("before-call.*.*", count)
    try:
        yield counts
    finally:
        for client in _clients():
            client.meta.events.unregister("before-call.*.*", count)


@contextmanager
def crash_after(call: int) -> Iterator[list[str]]:
    """Raise :class:`Crash` once the ``call``-th AWS request (1-based) has returned; yields the calls seen."""
    seen: list[str] = []

    def maybe_crash(model: Any, **_: Any) -> None:
        seen.append(f"{model.service_model.endpoint_prefix}.{model.name}")
        if len(seen) == call:
            raise Crash(f"crash after call {call} ({seen[-1]})")

    for client in _clients():
        client.meta.events.register("after-call.*.*", maybe_crash)
    try:
        yield seen
    finally:
        for client in _clients():
            client.meta.events.unregister("after-call.*.*", maybe_crash)

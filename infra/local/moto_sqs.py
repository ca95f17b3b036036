"""moto's SQS without recounting the whole queue for every attribute and every received message.

moto's ``Queue.attributes`` is a property that builds every attribute of the queue, the three
``ApproximateNumberOfMessages*`` counts included: each count walks every message of the queue and reads
the clock (``unix_time_millis``, two ``datetime`` constructions) for each one. Two callers read it far
more often than they need:

- ``SQSBackend.get_queue_attributes`` with named attributes reads the property up to three times *per
  name* (``name in queue.attributes``, then ``queue.attributes.get(name)`` twice): asking for two counts
  walks the queue eighteen times. Patched: the property is read once per request, and the same
  dictionary answers every name (moto's filtering, order and errors unchanged).
- ``SQSBackend.is_message_valid_based_on_retention_period``, called for every message ``ReceiveMessage``
  hands out, asks ``get_queue_attributes`` for ``MessageRetentionPeriod`` only to read one number the
  queue holds: a receive of 10 messages walked the queue up to ninety times. Patched: the queue's
  ``message_retention_period`` is read directly (what the attribute is made of: an integer, never
  ``None`` nor a boolean, set by ``Queue._set_attributes``), compared with the clock as moto does.

- ``SQSBackend.send_message`` reads ``queue.attributes`` for one setting (``ContentBasedDeduplication``),
  so every message sent walked the queue three times. Patched: while a message is being sent, the three
  counts are not made (they read 0 there); nothing a send reads depends on them, and a count asked for
  by any other request is made as moto makes it.

Together these made a receive cost O(messages in the queue) per message received, so a local stack
slowed down as its queues filled. Nothing is cached: every request still reads the queue as it is, and
a count still reads the clock per message as moto does. ``install()`` / ``uninstall()`` /
``installed()``; the randomized parity test (``tests/local/test_moto_sqs.py``) checks the answers equal
moto's own.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any

COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("moto_sqs_sending", default=False)
_originals: dict[str, Any] = {}
_lock = threading.Lock()


def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    """``SQSBackend.get_queue_attributes`` reading ``queue.attributes`` once (moto 5's body otherwise)."""
    from moto.sqs.exceptions import InvalidAttributeName

    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)
    if invalid_name or invalid_name == "":
        raise InvalidAttributeName(invalid_name)
    current: dict[str, Any] = queue.attributes
    if "All" in attribute_names:
        return current
    return {name: current[name] for name in attribute_names if current.get(name) is not None}


def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
    """Whether ``message`` is within its queue's retention period (moto's test, without the counts)."""
    from moto.core.utils import unix_time

    retention_period = self.get_queue(queue_name).message_retention_period
    retain_until = retention_period + message.sent_timestamp / 1000
    return not retain_until <= unix_time()


def _send_message(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _sending.set(True)
        try:
            return original(self, *args, **kwargs)
        finally:
            _sending.reset(token)

    return send_message


def _count(original: property) -> property:
    """A count of ``Queue`` that is not made while a message is being sent (nothing there reads it)."""

    def count(self: Any) -> int:
        return 0 if _sending.get() else int(original.fget(self))  # type: ignore[misc]

    return property(count, doc=original.__doc__)


def install() -> None:
    """Patch moto's ``SQSBackend`` (idempotent)."""
    from moto.sqs.models import Queue, SQSBackend

    with _lock:
        if _originals:
            return
        for name, patched in (
            ("get_queue_attributes", get_queue_attributes),
            ("is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period),
            ("send_message", _send_message(SQSBackend.send_message)),
        ):
            _originals[name] = SQSBackend.__dict__[name]
            setattr(SQSBackend, name, patched)
        for name in COUNTS:
            _originals[name] = Queue.__dict__[name]
            setattr(Queue, name, _count(Queue.__dict__[name]))


def uninstall() -> None:
    """Restore moto's own ``SQSBackend`` methods (idempotent)."""
    from moto.sqs.models import Queue, SQSBackend

    with _lock:
        for name, original in _originals.items():
            setattr(Queue if name in COUNTS else SQSBackend, name, original)
        _originals.clear()


def installed() -> bool:
    return bool(_originals)

"""Topic parsing: the one parser in the product.

Topics are segments of ``[A-Za-z0-9_-]+`` joined by ``/`` or ``.``; both separators mean the same, and the
canonical form (stored, shown, matched) uses ``/``. Matching is exact and case-sensitive.
"""

from __future__ import annotations

import re

from polos.errors import InvalidTopicError

MAX_TOPIC_LENGTH = 256
_TOPIC = re.compile(r"[A-Za-z0-9_-]+(?:[/.][A-Za-z0-9_-]+)*")


def canonical_topic(topic: object, *, field: str = "topic") -> str:
    """Validate ``topic`` and return its canonical ``/``-separated form.

    ``field`` names the input in the error message (``topic``, ``trigger_on_event`` …).
    """
    if not isinstance(topic, str):
        raise InvalidTopicError(f"{field} must be a string, got {type(topic).__name__}")
    if not topic:
        raise InvalidTopicError(f"{field} must not be empty")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"{field} is {len(topic)} characters long; at most {MAX_TOPIC_LENGTH} are allowed"
        )
    if not _TOPIC.fullmatch(topic):
        raise InvalidTopicError(
            f"{field} {topic!r} is invalid: use segments of letters, digits, '_' or '-' joined by '/' or '.'"
        )
    return topic.replace(".", "/")

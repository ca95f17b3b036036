"""``limits``: what AWS refuses and moto takes.

- Lambda: an invocation's payload and its response are at most 6 MB. The event source mapping cuts a
  batch so its event fits (the messages left out go back to the queue at once); a response over the limit
  fails the invocation.
- SQS: a message body holds only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF, and
  ``DelaySeconds`` is 0 to 900.
"""

from __future__ import annotations

import json
import re
from typing import Any

INVOCATION_BYTES = 6 * 1024 * 1024  # Lambda's synchronous request and response payload limit
MAX_DELAY_SECONDS = 900
DISALLOWED_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Json = dict[str, Any]


class ResponseTooLarge(RuntimeError):
    """Lambda's answer to a function whose response is over 6 MB."""


def payload_size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


def fitting(records: list[Json]) -> int:
    """How many of ``records``, from the first, fit one invocation's ``{"Records": [...]}`` (at least 1:
    an SQS message is far below the limit)."""
    total = len(b'{"Records":[]}')
    for count, record in enumerate(records):
        total += payload_size(record) + (1 if count else 0)
        if total > INVOCATION_BYTES:
            return max(1, count)
    return len(records)


def check_response(function: str, result: Any) -> None:
    """:class:`ResponseTooLarge` when ``result`` is over Lambda's response limit."""
    size = payload_size(result)
    if size > INVOCATION_BYTES:
        raise ResponseTooLarge(
            f"{function}: Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({INVOCATION_BYTES} bytes)."
        )


def sqs_refusal(operation: str, params: Json) -> tuple[str, str] | None:
    """The error SQS answers a send with (code, message), or ``None`` when it takes it."""
    if operation == "SendMessage":
        entries = [params]
    elif operation == "SendMessageBatch":
        entries = list(params.get("Entries", []))
    else:
        return None
    for entry in entries:
        bad = DISALLOWED_CHARACTER.search(entry.get("MessageBody", ""))
        if bad is not None:
            return (
                "InvalidMessageContents",
                f"Invalid binary character '#x{ord(bad.group()):X}' was found in the message body, the set "
                "of allowed characters is available here: https://www.w3.org/TR/REC-xml/#charsets",
            )
        delay = entry.get("DelaySeconds", 0)
        if not 0 <= delay <= MAX_DELAY_SECONDS:
            return (
                "InvalidParameterValue",
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and "
                f"{MAX_DELAY_SECONDS}, if provided.",
            )
    return None

"""An SQS stand-in for what moto does not check: the message character set and the queue's size limit.

Real SQS takes only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in a body and refuses
a body over the queue's ``MaximumMessageSize``. ``sqs_rules()`` installs a botocore
``before-parameter-build`` hook on the process-wide SQS client that refuses such a send as real SQS does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError
from polos.aws import settings

DISALLOWED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _refuse(operation: str, code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@contextmanager
def sqs_rules() -> Iterator[list[int]]:
    """Enforce SQS's character set and ``MaximumMessageSize``; yields the sizes of the bodies accepted."""
    sqs = settings.sqs()
    limits: dict[str, int] = {}
    sizes: list[int] = []

    def limit(url: str) -> int:
        if url not in limits:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
            limits[url] = int(attributes["Attributes"]["MaximumMessageSize"])
        return limits[url]

    def check(params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        bodies = (
            [entry["MessageBody"] for entry in params["Entries"]]
            if operation == "SendMessageBatch"
            else [params["MessageBody"]]
        )
        for body in bodies:
            bad = DISALLOWED.search(body)
            if bad is not None:
                raise _refuse(
                    operation,
                    "InvalidMessageContents",
                    f"Invalid binary character '#x{ord(bad.group()):X}' was found in the message body",
                )
            size = len(body.encode())
            if size > limit(params["QueueUrl"]):
                raise _refuse(
                    operation,
                    "InvalidParameterValue",
                    f"Message must be shorter than {limit(params['QueueUrl'])}",
                )
        sizes.extend(len(body.encode()) for body in bodies)

    events = sqs.meta.events
    names = ("before-parameter-build.sqs.SendMessageBatch", "before-parameter-build.sqs.SendMessage")
    for name in names:
        events.register(name, check)
    try:
        yield sizes
    finally:
        for name in names:
            events.unregister(name, check)

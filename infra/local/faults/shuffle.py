"""``shuffle``: each receive hands its messages out in random order (SQS standard queues keep no order)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.local.faults.injector import Injector

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def shuffle_receive(messages: list[MessageTypeDef], injector: Injector, queue: str) -> None:
    """Reorder one receive's ``messages`` in place (seeded); a reorder that moved something is counted."""
    if len(messages) < 2:
        return
    sent = [message["MessageId"] for message in messages]
    injector.shuffle(messages)
    if [message["MessageId"] for message in messages] != sent:
        injector.injected("shuffle", f"{queue}: a receive of {len(messages)} messages out of send order")

"""``duplicates``: a share of received messages is delivered twice, as SQS standard queues do (at-least-once
delivery): sometimes twice in the same batch, sometimes to a second invocation, concurrent with the first
when several pollers run (``pollers``).

A copy is the same message (id, body, receipt handle, receive count). Only the original is deleted or made
visible again by the mapping: the copy is what SQS would have handed out from another of its servers.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from infra.local.faults.injector import Injector

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


class Duplicates:
    """The copies of one queue's messages: those added to the batch they came in, and those waiting for
    the next receive of any poller of the queue."""

    def __init__(self, injector: Injector, rate: float, queue: str) -> None:
        self._injector = injector
        self._rate = rate
        self._queue = queue
        self._lock = threading.Lock()
        self._waiting: deque[MessageTypeDef] = deque()
        self._copies: set[int] = set()  # id() of copies handed out and not yet settled

    def after_receive(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """The copies to add to this batch; copies for another invocation wait for :meth:`take`."""
        same_batch: list[MessageTypeDef] = []
        for message in messages:
            if not self._injector.chance(self._rate):
                continue
            copy: MessageTypeDef = {**message}
            with self._lock:
                self._copies.add(id(copy))
            if self._injector.pick(2) == 0:
                same_batch.append(copy)
                where = "twice in one batch"
            else:
                with self._lock:
                    self._waiting.append(copy)
                where = "again to another invocation"
            self._injector.injected("duplicates", f"{self._queue}: message {message['MessageId']} {where}")
        return same_batch

    def take(self, count: int) -> list[MessageTypeDef]:
        """Up to ``count`` copies waiting to be delivered again."""
        with self._lock:
            return [self._waiting.popleft() for _ in range(min(count, len(self._waiting)))]

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def originals(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """``messages`` without the copies (the ones SQS itself holds), forgetting the copies."""
        with self._lock:
            kept = [message for message in messages if id(message) not in self._copies]
            self._copies.difference_update(id(message) for message in messages)
        return kept

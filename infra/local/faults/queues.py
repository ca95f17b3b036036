"""The faults of one queue's event source mapping: ``shuffle``, ``duplicates`` and the ``limits`` of the
invocation payload, applied by :class:`infra.local.mapping.EventSourceMapping`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.local.faults import limits
from infra.local.faults.duplicates import Duplicates
from infra.local.faults.injector import Injector
from infra.local.faults.shuffle import shuffle_receive

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


class QueueFaults:
    """What one mapping's receives and invocations meet."""

    def __init__(self, injector: Injector, workflow_id: str) -> None:
        faults = injector.faults
        self._injector = injector
        self._queue = workflow_id
        self._shuffle = faults.shuffle
        self._limits = faults.limits
        self._duplicates = Duplicates(injector, faults.duplicates, workflow_id) if faults.duplicates else None
        self.pollers = faults.poller_count

    def received(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """After a receive: its messages reordered in place; returns the copies to add to this batch."""
        if self._shuffle:
            shuffle_receive(messages, self._injector, self._queue)
        return self._duplicates.after_receive(messages) if self._duplicates is not None else []

    def copies(self, count: int) -> list[MessageTypeDef]:
        """Up to ``count`` copies of earlier messages, delivered again."""
        return self._duplicates.take(count) if self._duplicates is not None else []

    def waiting(self) -> int:
        return self._duplicates.waiting() if self._duplicates is not None else 0

    def originals(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """The messages SQS holds (not the copies), for deleting or releasing."""
        return self._duplicates.originals(messages) if self._duplicates is not None else messages

    def fitting(self, records: list[dict[str, Any]]) -> int:
        """How many records one invocation carries (Lambda's 6 MB payload) under ``limits``."""
        if not self._limits:
            return len(records)
        count = limits.fitting(records)
        if count < len(records):
            self._injector.injected(
                "limits", f"{self._queue}: a batch of {len(records)} cut to {count} to fit 6 MB"
            )
        return count

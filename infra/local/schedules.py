"""EventBridge Scheduler, emulated: each scheduled workflow's firings put on its queue.

Like the cloud, a firing is a ``schedule`` message whose ``scheduled_time`` names the run. Unlike a cloud
that never sleeps, a laptop does: when several firings were missed (asleep, or time skipped in a test),
only the latest runs — once, not once per missed minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from polos.payloads import utc_iso
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock

from infra.model import AppModel, WorkflowQueue


class LocalSchedules:
    """Call :meth:`tick` often (``polos dev``: every second; ``polos.testing``: every drain)."""

    def __init__(self, model: AppModel) -> None:
        self._scheduled = [queue for queue in model.queues if queue.schedule is not None]
        started = self._now()
        self._next = {queue.workflow_id: self._after(queue, started) for queue in self._scheduled}

    @staticmethod
    def _now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC)

    @staticmethod
    def _after(queue: WorkflowQueue, moment: datetime) -> datetime:
        assert queue.schedule is not None
        return queue.schedule.next_after(moment)

    def tick(self) -> int:
        """Fire each schedule whose time has come (its latest missed firing only); returns how many."""
        now = self._now()
        firings: list[WorkflowMessage] = []
        for queue in self._scheduled:
            if now < self._next[queue.workflow_id]:
                continue
            assert queue.schedule is not None
            latest = queue.schedule.previous_before(now + timedelta(microseconds=1))
            firings.append(WorkflowMessage(queue.workflow_id, "schedule", scheduled_time=utc_iso(latest)))
            self._next[queue.workflow_id] = self._after(queue, now)
        if firings:
            deliver(firings)
        return len(firings)

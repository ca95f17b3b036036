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

from infra.model import AppModel


class LocalSchedules:
    """Call :meth:`tick` often (``polos dev``: every second; ``polos.testing``: every drain)."""

    def __init__(self, model: AppModel) -> None:
        self._schedules = {q.workflow_id: q.schedule for q in model.queues if q.schedule is not None}
        started = self._now()
        self._next = {wf: schedule.next_after(started) for wf, schedule in self._schedules.items()}

    @staticmethod
    def _now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC)

    def tick(self) -> int:
        """Fire each schedule whose time has come (its latest missed firing only); returns how many."""
        now = self._now()
        firings: list[WorkflowMessage] = []
        for workflow_id, schedule in self._schedules.items():
            if now < self._next[workflow_id]:
                continue
            latest = schedule.previous_before(now + timedelta(microseconds=1))
            firings.append(WorkflowMessage(workflow_id, "schedule", scheduled_time=utc_iso(latest)))
            self._next[workflow_id] = schedule.next_after(now)
        if firings:
            deliver(firings)
        return len(firings)

"""EventBridge Scheduler, emulated: each schedule's firings put on its workflow's queue.

Two kinds of schedule: a workflow's own (``@workflow(schedule=...)``, from the app model) and those made at
run time (``polos.schedules.create``), which the API function keeps as schedules in moto's EventBridge
Scheduler group, exactly as on AWS; each tick reads that group (a schedule created, replaced or deleted
takes effect at the next tick, its first firing the first due after it was seen).

Like the cloud, a firing is a ``schedule`` message whose ``scheduled_time`` (and, for a keyed schedule,
its id) names the run. Unlike a cloud that never sleeps, a laptop does: when several firings were missed
(asleep, or time skipped in a test), only the latest runs — once, not once per missed minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from polos.payloads import utc_iso
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock, schedule_registry
from polos.runtime.schedule_registry import KeyedSchedule
from polos.schedules import Schedule

from infra.model import AppModel


class LocalSchedules:
    """Call :meth:`tick` often (``polos dev``: every second; ``polos.testing``: every drain)."""

    def __init__(self, model: AppModel) -> None:
        self._schedules = {q.workflow_id: q.schedule for q in model.queues if q.schedule is not None}
        started = self._now()
        self._next = {wf: schedule.next_after(started) for wf, schedule in self._schedules.items()}
        self._keyed_enabled = any(q.schedulable for q in model.queues)
        self._keyed_next: dict[str, tuple[KeyedSchedule, datetime]] = {}  # by schedule id

    @staticmethod
    def _now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC)

    def tick(self) -> int:
        """Fire each schedule whose time has come (its latest missed firing only); returns how many."""
        now = self._now()
        firings: list[WorkflowMessage] = []
        for workflow_id, schedule in self._schedules.items():
            fired = self._due(schedule, self._next[workflow_id], now)
            if fired is not None:
                firings.append(WorkflowMessage(workflow_id, "schedule", scheduled_time=utc_iso(fired)))
                self._next[workflow_id] = schedule.next_after(now)
        for keyed in self._keyed(now):
            _, due = self._keyed_next[keyed.id]
            fired = self._due(keyed.schedule, due, now)
            if fired is not None:
                firings.append(keyed.message(utc_iso(fired)))
                self._keyed_next[keyed.id] = (keyed, keyed.schedule.next_after(now))
        if firings:
            deliver(firings)
        return len(firings)

    @staticmethod
    def _due(schedule: Schedule, due: datetime, now: datetime) -> datetime | None:
        """The latest firing at or before ``now`` when ``due`` has come, else ``None``."""
        if now < due:
            return None
        return schedule.previous_before(now + timedelta(microseconds=1))

    def _keyed(self, now: datetime) -> list[KeyedSchedule]:
        """The schedules made at run time, as they are now; a new or replaced one is due from ``now`` on."""
        if not self._keyed_enabled:
            return []
        current: dict[str, KeyedSchedule] = {}
        cursor: str | None = None
        while True:
            found, cursor = schedule_registry.page(None, cursor)
            current.update((keyed.id, keyed) for keyed in found)
            if not cursor:
                break
        for gone in set(self._keyed_next) - set(current):
            del self._keyed_next[gone]
        for keyed in current.values():
            known = self._keyed_next.get(keyed.id)
            if known is None or known[0] != keyed:
                self._keyed_next[keyed.id] = (keyed, keyed.schedule.next_after(now))
        return list(current.values())

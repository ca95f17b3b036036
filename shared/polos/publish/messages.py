"""The SQS message body a workflow's queue carries: an event, an invoked run, a wake-up or a firing.

Bodies are pure ASCII (``ensure_ascii``): SQS refuses or alters characters outside its set (#x9 | #xA | #xD |
#x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF; U+FFFE and U+FFFF are valid JSON but not in it), so every
non-ASCII character travels as a JSON escape and comes back exact. Escaping costs at most 3x the UTF-8
size (a 2-byte character becomes 6 bytes, a 4-byte one 12): an event of the maximal 256 KB of data is
at most 768 KB of escaped data plus its envelope (< 8 KB: topic, ids, event type), under
:data:`MAX_MESSAGE_BYTES` (1 MiB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from polos.payloads import EventItem

MESSAGE_VERSION = 1
# The queues' MaximumMessageSize (SQS's maximum, 1 MiB since 2025); the infrastructure sets it explicitly.
MAX_MESSAGE_BYTES = 1024 * 1024
KEYED_SCHEDULE_FIELDS = ("id", "key", "cron", "timezone")


@dataclass(frozen=True)
class WorkflowMessage:
    """``kind="event"`` carries the stored event; ``kind="invoke"`` names a run created by the API;
    ``kind="resume"`` wakes run ``run_id`` waiting in step ``step``; ``kind="schedule"`` is a schedule's
    firing at ``scheduled_time`` (EventBridge Scheduler fills it in); ``kind="debounce"`` checks burst
    ``step`` of the debounce state item ``run_id`` (see ``polos.runtime.event_flow``), and an ``event`` that
    is ``released`` is the run a debounced burst starts. ``delay_seconds`` is not part of the
    body: it is the SQS delay the message is sent with (a timer's wake-up)."""

    workflow_id: str
    kind: Literal["event", "invoke", "resume", "schedule", "debounce"]
    event: EventItem | None = None
    run_id: str | None = None
    step: str | None = None
    scheduled_time: str | None = None
    # A schedule made with ``polos.schedules.create``: {"id", "key", "cron", "timezone"} (None: the
    # workflow's own ``schedule=``).
    schedule: dict[str, str] | None = None
    delay_seconds: int = 0
    released: bool = False

    def to_json(self) -> str:
        body: dict[str, Any] = {"v": MESSAGE_VERSION, "kind": self.kind, "workflow_id": self.workflow_id}
        if self.event is not None:
            body["event"] = self.event.model_dump(mode="json")
        if self.run_id is not None:
            body["run_id"] = self.run_id
        if self.step is not None:
            body["step"] = self.step
        if self.scheduled_time is not None:
            body["scheduled_time"] = self.scheduled_time
        if self.schedule is not None:
            body["schedule"] = self.schedule
        if self.released:
            body["released"] = True
        return json.dumps(body, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> WorkflowMessage:
        """Parse a message body; ``ValueError`` naming the problem when it is not ours."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"message body is not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("v") != MESSAGE_VERSION:
            raise ValueError("message body is not a Polos workflow message (missing or unknown 'v')")
        kind = body.get("kind")
        workflow_id = body.get("workflow_id")
        if not isinstance(workflow_id, str):
            raise ValueError("message body has no workflow_id")
        if kind == "event":
            event = EventItem.model_validate(body.get("event"))
            released = body.get("released") is True
            return cls(workflow_id=workflow_id, kind="event", event=event, released=released)
        if kind == "invoke" and isinstance(body.get("run_id"), str):
            return cls(workflow_id=workflow_id, kind="invoke", run_id=body["run_id"])
        if kind == "resume" and isinstance(body.get("run_id"), str) and isinstance(body.get("step"), str):
            return cls(workflow_id=workflow_id, kind="resume", run_id=body["run_id"], step=body["step"])
        if kind == "debounce" and isinstance(body.get("run_id"), str) and isinstance(body.get("step"), str):
            return cls(workflow_id=workflow_id, kind="debounce", run_id=body["run_id"], step=body["step"])
        if kind == "schedule" and isinstance(body.get("scheduled_time"), str):
            keyed = body.get("schedule")
            if keyed is not None and not (
                isinstance(keyed, dict) and all(isinstance(keyed.get(f), str) for f in KEYED_SCHEDULE_FIELDS)
            ):
                raise ValueError(f"message body's schedule must hold {', '.join(KEYED_SCHEDULE_FIELDS)}")
            return cls(
                workflow_id=workflow_id,
                kind="schedule",
                scheduled_time=body["scheduled_time"],
                schedule=None if keyed is None else {f: keyed[f] for f in KEYED_SCHEDULE_FIELDS},
            )
        raise ValueError(f"message body has an unknown kind {kind!r} or lacks its fields")

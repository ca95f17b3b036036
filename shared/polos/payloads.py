"""What event-triggered and scheduled workflows receive."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from polos.timestamps import utc_iso as utc_iso  # re-exported: its old home


class EventItem(BaseModel):
    """One stored event."""

    model_config = ConfigDict(frozen=True)

    id: str
    sequence_id: int = Field(ge=1)
    topic: str
    event_type: str | None = None
    data: dict[str, Any]
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_serializer("created_at")
    def _serialize_created_at(self, value: datetime) -> str:
        return utc_iso(value)


# The workflows' payload models are built when a workflow is defined with one (its TypeAdapter) or one is
# first validated, not at import: the API, which stores events (EventItem) and runs no workflow, does not
# pay for building them (cold start, issue 12).
_WORKFLOW_PAYLOAD = ConfigDict(frozen=True, defer_build=True)


class EventPayload(EventItem):
    """The payload of a single-event workflow: the event that triggered the run."""

    model_config = _WORKFLOW_PAYLOAD


PayloadEvent = EventPayload
"""Alias of :class:`EventPayload` (the user documentation uses both names)."""


class BatchEventPayload(BaseModel):
    """The payload of a batch workflow: its events, ordered by ``sequence_id``."""

    model_config = _WORKFLOW_PAYLOAD

    events: list[EventItem]

    @field_validator("events")
    @classmethod
    def _in_sequence_order(cls, events: list[EventItem]) -> list[EventItem]:
        return sorted(events, key=lambda event: (event.topic, event.sequence_id))


class SchedulePayload(BaseModel):
    """The payload of a scheduled workflow: this firing's time, the one before it and the next one, the
    schedule's time zone, id and key (the official SDK's fields), and its cron expression."""

    model_config = _WORKFLOW_PAYLOAD

    timestamp: datetime
    last_timestamp: datetime | None = None
    timezone: str = "UTC"
    schedule_id: str | None = None
    key: str | None = None
    upcoming: datetime | None = None
    schedule: str | None = None

    @field_validator("timestamp", "last_timestamp", "upcoming")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_serializer("timestamp", "last_timestamp", "upcoming")
    def _serialize_times(self, value: datetime | None) -> str | None:
        return None if value is None else utc_iso(value)


class ResumeData(dict[str, Any]):
    """What ``ctx.step.suspend`` returns: the data the resume gave, as a plain dict (``==`` a dict, JSON as
    one). The official SDK returns the resume *event* instead and its users read ``result.get("data")`` /
    ``result["data"]``: that reading works here too and gives the same data, unless the data has a key
    ``"data"`` of its own (then it is that key's value, as for any dict)."""

    def __getitem__(self, key: str) -> Any:
        if key == "data" and not super().__contains__("data"):
            return dict(self)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``, with ``"data"`` read as the official SDK's users read it (see the class)."""
        if key == "data" and not super().__contains__("data"):
            return dict(self)
        return super().get(key, default)

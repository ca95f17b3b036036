"""Cron schedules of workflows: parsing and checking at decoration time, firing times, the AWS expression.

A schedule is a 5-field cron expression (minute, hour, day of month, month, day of week) and an IANA time
zone (UTC when not given). ``croniter`` parses and iterates it; :meth:`Schedule.aws_expression` renders the
same times for EventBridge Scheduler, whose ``cron()`` has 6 fields, numbers days of the week 1-7 from
Sunday and needs ``?`` in one of the two day fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from polos.errors import WorkflowDefinitionError
from polos.payloads import SchedulePayload

CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def _croniter() -> Any:  # croniter ships no type hints
    """The ``croniter`` class, imported by the first schedule parsed or evaluated: an app without schedules,
    and a handler that loads no app, does not pay for its import (~5 ms of a cold start, issue 12)."""
    from croniter import croniter

    return croniter


@dataclass(frozen=True)
class Schedule:
    """When a scheduled workflow runs: ``cron`` (5 fields) in time zone ``timezone``."""

    cron: str
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment`` (aware), in UTC."""
        fired: datetime = _croniter()(self.cron, moment.astimezone(self.zone)).get_next(datetime)
        return fired.astimezone(UTC)

    def previous_before(self, moment: datetime) -> datetime:
        """The last firing strictly before ``moment`` (aware), in UTC."""
        fired: datetime = _croniter()(self.cron, moment.astimezone(self.zone)).get_prev(datetime)
        return fired.astimezone(UTC)

    def aws_expression(self) -> str:
        """The same times in EventBridge Scheduler's ``cron(min hour day month day-of-week year)``."""
        fields = _croniter()(self.cron).expanded
        minute, hour, day, month, weekday = (
            "*" if values == ["*"] else ",".join(str(value) for value in values) for values in fields
        )
        if weekday != "*":
            # croniter numbers Sunday 0 (and 7); EventBridge numbers it 1.
            weekday = ",".join(str(n) for n in sorted({int(v) % 7 + 1 for v in weekday.split(",")}))
        if day == "*":
            day, weekday = ("?", weekday) if weekday != "*" else ("*", "?")
        else:
            weekday = "?"  # parse() refused a schedule restricting both day fields
        return f"cron({minute} {hour} {day} {month} {weekday} *)"

    def payload(self, timestamp: datetime) -> dict[str, Any]:
        """The :class:`~polos.payloads.SchedulePayload` (as JSON data) of the firing at ``timestamp``."""
        return SchedulePayload(
            timestamp=timestamp,
            last_timestamp=self.previous_before(timestamp),
            timezone=self.timezone,
            schedule=self.cron,
        ).model_dump(mode="json")


def parse(value: Any, workflow_id: str) -> Schedule:
    """``"0 3 * * *"`` or ``{"cron": "...", "timezone": "Europe/Paris"}``; ``WorkflowDefinitionError``
    naming the parameter, the value and the rule otherwise."""
    where = f"workflow {workflow_id!r}: schedule"
    cron: Any
    timezone: Any
    if isinstance(value, str):
        cron, timezone = value, "UTC"
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"cron", "timezone"})
        if unknown:
            raise WorkflowDefinitionError(
                f"{where} has unknown key(s) {unknown}; it takes 'cron' and 'timezone'"
            )
        cron, timezone = value.get("cron"), value.get("timezone", "UTC")
    else:
        raise WorkflowDefinitionError(
            f"{where} must be a cron string or {{'cron': ..., 'timezone': ...}}, got {value!r}"
        )
    if not isinstance(cron, str) or len(cron.split()) != len(CRON_FIELDS):
        raise WorkflowDefinitionError(
            f"{where} cron {cron!r} must have 5 fields: {', '.join(CRON_FIELDS)} (e.g. '0 3 * * *')"
        )
    if not _croniter().is_valid(cron):
        raise WorkflowDefinitionError(f"{where} cron {cron!r} is not a valid cron expression")
    day, weekday = cron.split()[2], cron.split()[4]
    if day != "*" and weekday != "*":
        raise WorkflowDefinitionError(
            f"{where} cron {cron!r} restricts both day of month and day of week; EventBridge Scheduler "
            "cannot run that: restrict one of them (or use two workflows)"
        )
    if not isinstance(timezone, str):
        raise WorkflowDefinitionError(
            f"{where} timezone must be an IANA name like 'Europe/Paris', got {timezone!r}"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WorkflowDefinitionError(
            f"{where} timezone {timezone!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Paris')"
        ) from None
    return Schedule(cron=" ".join(cron.split()), timezone=timezone)

"""Cron schedules of workflows: parsing and checking at decoration time, firing times, the AWS expression;
and, with the official SDK's names, the schedules made at run time for ``@workflow(schedule=True)``
workflows: :func:`create` (one per workflow and key; created again = replaced), :func:`list_schedules`,
:func:`delete`.

A schedule is a 5-field cron expression (minute, hour, day of month, month, day of week) and an IANA time
zone (UTC when not given). ``croniter`` parses and iterates it; :meth:`Schedule.aws_expression` renders the
same times for EventBridge Scheduler, whose ``cron()`` has 6 fields, numbers days of the week 1-7 from
Sunday and needs ``?`` in one of the two day fields.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from polos.errors import WorkflowDefinitionError
from polos.payloads import SchedulePayload

if TYPE_CHECKING:
    from polos.client import PolosClient

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

    def payload(
        self, timestamp: datetime, schedule_id: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """The :class:`~polos.payloads.SchedulePayload` (as JSON data) of the firing at ``timestamp`` (of
        the schedule ``schedule_id`` / ``key`` when made with :func:`create`)."""
        return SchedulePayload(
            timestamp=timestamp,
            last_timestamp=self.previous_before(timestamp),
            timezone=self.timezone,
            schedule_id=schedule_id,
            key=key,
            upcoming=self.next_after(timestamp),
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


def _workflow_id(workflow: Any) -> str:
    workflow_id = workflow if isinstance(workflow, str) else getattr(workflow, "id", None)
    if not isinstance(workflow_id, str):
        raise TypeError(f"workflow must be a workflow or its id, got {workflow!r}")
    return workflow_id


async def create(
    client: PolosClient, workflow: Any, cron: str, timezone: str = "UTC", key: str = "global"
) -> str:
    """Schedule ``workflow`` (a ``schedule=True`` workflow or its id) at ``cron`` in ``timezone``; the
    schedule's id. One schedule per workflow and ``key``: created again with the same key, it is replaced."""
    body = {"workflow_id": _workflow_id(workflow), "cron": cron, "timezone": timezone, "key": key}
    answer = await client._call("POST", "/api/v1/schedules", body)
    return str(answer["schedule_id"])


async def list_schedules(client: PolosClient, workflow: Any = None) -> list[dict[str, Any]]:
    """Every schedule made with :func:`create` (of ``workflow`` when given): ``schedule_id``,
    ``workflow_id``, ``key``, ``cron``, ``timezone``."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"workflow_id": None if workflow is None else _workflow_id(workflow), "cursor": cursor}
        params = urllib.parse.urlencode({name: value for name, value in query.items() if value is not None})
        answer = await client._call("GET", f"/api/v1/schedules?{params}")
        found.extend(answer["schedules"])
        cursor = answer.get("next_cursor")
        if not cursor:
            return found


async def delete(client: PolosClient, schedule_id: str) -> None:
    """Delete a schedule made with :func:`create` (``PolosAPIError`` 404 when there is none)."""
    await client._call("DELETE", f"/api/v1/schedules/{urllib.parse.quote(schedule_id, safe='')}")

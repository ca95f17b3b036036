"""Schedules made at run time (``polos.schedules.create``): one EventBridge Scheduler schedule per
(workflow, key), in the deployment's schedule group (``polos dev``: moto's, fired by the local emulator).

EventBridge Scheduler is the only store: a schedule's name is derived from its workflow and key (so it is
also its id), and its target's input is the ``schedule`` message its firings put on the workflow's queue,
carrying the schedule's id, key, cron and time zone (a firing needs nothing else, and a firing delivered
twice is one run: its run id is derived from the schedule id and the firing time).

Failures: a create whose answer was lost is retried by botocore and finds the schedule: ``ConflictException``,
then the same update (the same content). Two creates of one key at once: one creates, the other updates;
the last one wins, as "created again = replaced" says. A delete of a schedule already gone is ``False``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.publish.messages import WorkflowMessage
from polos.schedules import Schedule

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # EventBridge Scheduler fills in the firing time
MAX_KEY_LENGTH = 256
PAGE = 50


class ScheduleConfigError(RuntimeError):
    """The deployment has no schedule group or scheduler role (``POLOS_SCHEDULE_GROUP`` and co.)."""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def workflow_prefix(workflow_id: str) -> str:
    """The start of the names of a workflow's schedules (EventBridge lists schedules by name prefix)."""
    return f"s{_digest(workflow_id)[:12]}-"


def schedule_id(workflow_id: str, key: str) -> str:
    """The id (and EventBridge name, at most 64 characters) of the workflow's schedule ``key``."""
    return workflow_prefix(workflow_id) + _digest(workflow_id, key)[:26]


@dataclass(frozen=True)
class KeyedSchedule:
    """One schedule made at run time."""

    id: str
    workflow_id: str
    key: str
    schedule: Schedule

    def message(self, scheduled_time: str = SCHEDULED_TIME) -> WorkflowMessage:
        """The ``schedule`` message of a firing (the target's input, with Scheduler's placeholder)."""
        fields = {
            "id": self.id,
            "key": self.key,
            "cron": self.schedule.cron,
            "timezone": self.schedule.timezone,
        }
        return WorkflowMessage(self.workflow_id, "schedule", scheduled_time=scheduled_time, schedule=fields)

    def view(self) -> dict[str, Any]:
        """As the HTTP API shows it."""
        return {
            "schedule_id": self.id,
            "workflow_id": self.workflow_id,
            "key": self.key,
            "cron": self.schedule.cron,
            "timezone": self.schedule.timezone,
        }

    @classmethod
    def from_target_input(cls, text: str) -> KeyedSchedule:
        """The schedule an EventBridge schedule's target input describes (``ValueError`` if not ours)."""
        message = WorkflowMessage.from_json(text)
        if message.schedule is None:
            raise ValueError("the schedule's input is not a keyed schedule's firing")
        fields = message.schedule
        return cls(
            fields["id"], message.workflow_id, fields["key"], Schedule(fields["cron"], fields["timezone"])
        )


def _group_and_role() -> tuple[str, str]:
    config = settings.get_settings()
    if not config.schedule_group or not config.scheduler_role_arn:
        raise ScheduleConfigError(
            f"schedules need {settings.ENV_SCHEDULE_GROUP} and {settings.ENV_SCHEDULER_ROLE_ARN} "
            "(the template sets them when a workflow has schedule=True)"
        )
    return config.schedule_group, config.scheduler_role_arn


def put(workflow_id: str, schedule: Schedule, key: str) -> KeyedSchedule:
    """Create the workflow's schedule ``key``, or replace it with this one; returns it."""
    group, role = _group_and_role()
    keyed = KeyedSchedule(schedule_id(workflow_id, key), workflow_id, key, schedule)
    params: dict[str, Any] = {
        "Name": keyed.id,
        "GroupName": group,
        "Description": f"Runs {workflow_id} at {schedule.cron} ({schedule.timezone})"[:512],
        "ScheduleExpression": schedule.aws_expression(),
        "ScheduleExpressionTimezone": schedule.timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": settings.get_settings().queue_arn(workflow_id),
            "RoleArn": role,
            "Input": keyed.message().to_json(),
        },
    }
    client = settings.scheduler()
    try:
        client.create_schedule(**params)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConflictException":
            raise
        client.update_schedule(**params)  # created again: replaced
    return keyed


def get(group: str, name: str) -> KeyedSchedule | None:
    """The schedule named ``name`` in ``group``, ``None`` when it is gone or not ours."""
    try:
        found = settings.scheduler().get_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    try:
        return KeyedSchedule.from_target_input(found["Target"]["Input"])
    except (KeyError, ValueError):
        return None


def page(workflow_id: str | None = None, cursor: str | None = None) -> tuple[list[KeyedSchedule], str | None]:
    """One page of the schedules (of ``workflow_id``), and the cursor of the next (``None``: no more)."""
    group = settings.get_settings().schedule_group
    if not group:  # no workflow is schedule=True: there is none
        return [], None
    query: dict[str, Any] = {"GroupName": group, "MaxResults": PAGE}
    if workflow_id is not None:
        query["NamePrefix"] = workflow_prefix(workflow_id)
    if cursor:
        query["NextToken"] = cursor
    answer = settings.scheduler().list_schedules(**query)
    found = [get(group, item["Name"]) for item in answer.get("Schedules", [])]
    schedules = [s for s in found if s is not None and (workflow_id is None or s.workflow_id == workflow_id)]
    return schedules, answer.get("NextToken")


def delete(identifier: str) -> bool:
    """Delete the schedule ``identifier``; ``False`` when there was none."""
    group = settings.get_settings().schedule_group
    if not group:
        return False
    try:
        settings.scheduler().delete_schedule(Name=identifier, GroupName=group)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True

"""The schedules API: ``POST /api/v1/schedules`` (create, or replace the workflow's schedule of that key),
``GET /api/v1/schedules`` (list, optionally of one workflow) and ``DELETE /api/v1/schedules/{id}``.

The body and answer follow the official Polos SDK (``workflow_id``, ``cron``, ``timezone``, ``key`` →
``schedule_id``). Only a workflow declared ``@workflow(schedule=True)`` takes schedules made this way.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field

from polos import schedules
from polos.api.errors import NotFound, ValidationFailed
from polos.errors import WorkflowDefinitionError
from polos.publish import manifest

router = Router()  # type: ignore[no-untyped-call]

DEFAULT_KEY = "global"  # the official SDK's key of a workflow's one global schedule


class ScheduleRequest(BaseModel):
    """The body of ``POST /api/v1/schedules``."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(min_length=1)
    cron: str
    timezone: str = "UTC"
    key: str = Field(default=DEFAULT_KEY, min_length=1, max_length=256)


def _schedulable(workflow_id: str) -> None:
    entry = manifest.current().workflows.get(workflow_id)
    if entry is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist")
    if not entry.schedulable:
        raise ValidationFailed(
            f"workflow_id: workflow {workflow_id!r} is not schedulable; declare it @workflow(schedule=True)"
        )


@router.post("/api/v1/schedules")
def create_schedule(body: ScheduleRequest) -> dict[str, Any]:
    """Create the workflow's schedule ``key`` (created again with the same key: replaced)."""
    from polos.runtime import schedule_registry

    _schedulable(body.workflow_id)
    try:
        parsed = schedules.parse({"cron": body.cron, "timezone": body.timezone}, body.workflow_id)
    except WorkflowDefinitionError as exc:
        raise ValidationFailed(f"cron/timezone: {exc}") from None
    return schedule_registry.put(body.workflow_id, parsed, body.key).view()


@router.get("/api/v1/schedules")
def list_schedules(
    workflow_id: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """One page of the schedules made at run time (of ``workflow_id``), and the next page's cursor."""
    from polos.runtime import schedule_registry

    found, following = schedule_registry.page(workflow_id, cursor)
    return {"schedules": [schedule.view() for schedule in found], "next_cursor": following}


@router.delete("/api/v1/schedules/<schedule_id>")
def delete_schedule(schedule_id: str) -> dict[str, Any]:
    """Delete a schedule: it fires no more (a firing already on its way still runs)."""
    from polos.runtime import schedule_registry

    if not schedule_registry.delete(schedule_id):
        raise NotFound(f"schedule {schedule_id!r} does not exist")
    return {"schedule_id": schedule_id, "deleted": True}

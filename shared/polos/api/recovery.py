"""Recovery routes: ``POST /api/v1/runs/{run_id}/rerun`` and the bulk ``POST /api/v1/runs/cancel`` and
``POST /api/v1/runs/rerun`` (scope ``admin``, as every POST but publishing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel, ConfigDict, Field, field_validator

from polos.api.errors import Conflict, IdempotencyConflict, NotFound, ValidationFailed
from polos.api.runs import MAX_PAYLOAD_BYTES, compact_json
from polos.publish import idempotency
from polos.publish.fanout import FanoutError
from polos.runtime.status import RunStatus
from polos.timestamps import utc_iso

router = Router()  # type: ignore[no-untyped-call]

MAX_BULK = 10_000  # = polos.runtime.recovery.MAX_BULK (that module loads with the route: cold start)
_KEY = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_LENGTH)
]


class RerunRequest(BaseModel):
    """The body of ``POST /api/v1/runs/{run_id}/rerun`` (both fields optional)."""

    model_config = ConfigDict(extra="forbid")

    from_step: str | None = Field(default=None, min_length=1, max_length=512)
    payload: Any = None


class BulkRequest(BaseModel):
    """The body of the bulk routes: the filter, and the ``cursor`` of the previous call's answer."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    status: RunStatus | None = None
    created_after: str | None = None
    created_before: str | None = None
    cursor: str | None = Field(default=None, min_length=1, max_length=100_000)
    limit: int = Field(default=MAX_BULK, ge=1, le=MAX_BULK)

    @field_validator("created_after", "created_before")
    @classmethod
    def _utc(cls, value: str | None) -> str | None:
        """An ISO 8601 time (naive = UTC) in the store's format, so that it compares with ``created_at``."""
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be an ISO 8601 time such as 2026-01-28T10:30:00Z, got {value!r}"
            ) from None
        return utc_iso(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


@router.post("/api/v1/runs/<run_id>/rerun")
def rerun_run(run_id: str, body: RerunRequest, idempotency_key: _KEY = None) -> tuple[dict[str, Any], int]:
    """A new run of a finished run's workflow and payload (``payload`` replaces it); with ``from_step``,
    the source's steps before that step replay as journaled (``202``)."""
    from polos.runtime import recovery, runs

    payload_json = (
        compact_json(body.payload, "payload", MAX_PAYLOAD_BYTES)
        if "payload" in body.model_fields_set
        else None
    )
    new_id = recovery.rerun_id(run_id, idempotency_key) if idempotency_key else runs.new_run_id()
    try:
        made = (
            recovery.create_rerun(
                run_id, new_run_id=new_id, from_step=body.from_step, payload_json=payload_json
            )
            if runs.valid_run_id(run_id)
            else None
        )
    except recovery.NoSuchStepError as exc:
        raise NotFound(str(exc)) from None
    except recovery.SourceNotFinishedError as exc:
        raise Conflict(str(exc)) from None
    except recovery.RerunConflictError as exc:
        raise IdempotencyConflict(str(exc)) from None
    if made is None:
        raise NotFound(f"run {run_id!r} does not exist")
    run, created = made
    try:
        recovery.send([run])
    except FanoutError:
        if created and idempotency_key is None:
            runs.discard_queued(run.run_id)  # SQS did not take the message: store nothing (no retry comes)
        raise
    answer = {
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "rerun_of": run_id,
        "created_at": run.created_at,
    }
    return answer, 202


def _bulk(
    action: Literal["cancel", "rerun"], body: BulkRequest, idempotency_key: str | None
) -> dict[str, Any]:
    from polos.runtime import recovery, runs

    wanted = recovery.RunFilter(body.workflow_id, body.status, body.created_after, body.created_before)
    op = f"key:{idempotency_key}" if idempotency_key else wanted.operation(action)
    try:
        done = recovery.bulk(action, wanted, op, body.cursor, body.limit)
    except runs.InvalidCursorError as exc:
        raise ValidationFailed(str(exc)) from None
    return {"matched": done.matched, "next_cursor": done.next_cursor}


@router.post("/api/v1/runs/cancel")
def cancel_runs(body: BulkRequest, idempotency_key: _KEY = None) -> dict[str, Any]:
    """Cancel every unfinished run the filter matches (up to ``limit``; ``next_cursor`` goes on):
    ``{"matched": N, "next_cursor": C|null}``."""
    return _bulk("cancel", body, idempotency_key)


@router.post("/api/v1/runs/rerun")
def rerun_runs(body: BulkRequest, idempotency_key: _KEY = None) -> dict[str, Any]:
    """Rerun every finished run the filter matches, once per operation (the ``Idempotency-Key``, else
    the filter): ``{"matched": N, "next_cursor": C|null}``."""
    return _bulk("rerun", body, idempotency_key)

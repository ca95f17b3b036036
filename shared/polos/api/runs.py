"""The runs API: direct invocation (``POST /api/v1/workflows/{id}/run``), reading and listing runs.

The API never imports user workflow code: a workflow is known from the manifest, and the payload is checked
against the handler's annotation by the worker (an invalid payload fails the run at once).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from pydantic import BaseModel, ConfigDict, Field

from polos import serde
from polos.api import costs
from polos.api.errors import Conflict, IdempotencyConflict, NotFound, PayloadTooLarge, ValidationFailed
from polos.publish import idempotency, manifest
from polos.publish.fanout import FanoutError
from polos.runtime.status import RunStatus
from polos.state import MAX_STATE_BYTES
from polos.timestamps import utc_iso

if TYPE_CHECKING:
    from polos.runtime.records import RunRecord

# The runtime behind these routes (polos.runtime.runs and .control, polos.definition) is imported by the
# routes themselves: a cold start that serves a publish (most of them) never loads it (~15 ms of the API's
# import; bench/coldstart.py).

router = Router()  # type: ignore[no-untyped-call]

MAX_PAYLOAD_BYTES = 256 * 1024
DEFAULT_PAGE = 50
MAX_PAGE = 100
# polos.queues' rules, repeated as constants here: importing it would load the definition's errors at the
# publish path's cold start (a test keeps them equal).
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_LENGTH = 256


class RunRequest(BaseModel):
    """The body of ``POST /api/v1/workflows/{workflow_id}/run``.

    ``run_timeout_seconds`` and ``initial_state`` are honoured (checked here, ``initial_state`` against
    the workflow's ``state_schema`` by the worker: a misfit fails the run at once, naming the field).
    ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key`` are honoured (polos.runtime.slots).
    ``wait_for_subworkflow``, ``deployment_id``, ``session_id``, ``user_id`` and ``otel_traceparent`` are
    those the Polos SDK sends that mean nothing here: accepted and ignored (DESIGN §2).
    """

    model_config = ConfigDict(extra="forbid")

    payload: Any = None
    wait_for_subworkflow: Any = None
    deployment_id: Any = None
    session_id: Any = None
    user_id: Any = None
    queue_name: str | None = Field(default=None, pattern=QUEUE_NAME_PATTERN)
    queue_concurrency_limit: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY_LIMIT, strict=True)
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    run_timeout_seconds: Annotated[int, Field(strict=True)] | None = None
    initial_state: dict[str, Any] | None = None
    otel_traceparent: Any = None


def compact_json(value: Any, name: str, limit: int) -> str:
    """``value`` as compact JSON within ``limit`` bytes (``400``/``413`` naming ``name`` otherwise)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValidationFailed(f"{name} is not valid JSON: {exc}") from None
    if (problem := serde.unicode_problem(text)) is not None:
        raise ValidationFailed(f"{name} {problem}")
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(f"{name} is {size} bytes as compact JSON; at most {limit} are allowed")
    return text


def _known_workflow(workflow_id: str, initial_state: object = None) -> None:
    entry = manifest.current().workflows.get(workflow_id)
    if entry is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist")
    if initial_state is not None and not entry.state:
        raise ValidationFailed(
            f"initial_state: workflow {workflow_id!r} has no state_schema, so it would be ignored"
        )


def _started(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "execution_id": run.run_id,
        "created_at": run.created_at,
    }


@router.post("/api/v1/workflows/<workflow_id>/run")
def run_workflow(
    workflow_id: str,
    body: RunRequest,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_LENGTH)
    ] = None,
) -> tuple[dict[str, Any], int]:
    """Create a ``queued`` run and send it to the workflow's queue (``202``)."""
    from polos.definition import run_timeout_problem
    from polos.runtime import runs

    initial_state = body.initial_state or None  # {} is no state (the Polos SDK's rule too)
    _known_workflow(workflow_id, initial_state)
    if (problem := run_timeout_problem(body.run_timeout_seconds)) is not None:
        raise ValidationFailed(problem)
    payload_json = compact_json(body.payload, "payload", MAX_PAYLOAD_BYTES)
    asked = {"name": body.queue_name, "limit": body.queue_concurrency_limit, "key": body.concurrency_key}
    options = runs.RunOptions(
        queue_json=json.dumps(asked) if any(value is not None for value in asked.values()) else None,
        run_timeout_seconds=body.run_timeout_seconds,
        initial_state_json=None
        if initial_state is None
        else compact_json(initial_state, "initial_state", MAX_STATE_BYTES),
    )
    run, created = runs.create_invoked(workflow_id, payload_json, idempotency_key, options=options)
    if not created:
        # The key was used before: the same request gets the same answer, another one a conflict.
        if run.payload_json is None or idempotency.request_hash(json.loads(run.payload_json)) != (
            idempotency.request_hash(body.payload)
        ):
            raise IdempotencyConflict("Idempotency-Key was already used with a different payload")
        if run.status == "queued":
            runs.enqueue(run)  # the first request may have stopped before sending it
        return _started(run), 202
    try:
        runs.enqueue(run)
    except FanoutError:
        runs.discard_queued(run.run_id)  # SQS answered that the message was not taken: store nothing
        raise
    except Exception:
        # Unclear (e.g. the answer was lost): the message may be on the queue. With an Idempotency-Key the
        # run stays, so the caller's retry gets it and sends again (a duplicate message names the same run).
        # Without one there is no retry to wait for: the run goes, and a message that did arrive finds no
        # run and is acknowledged unexecuted.
        if idempotency_key is None:
            runs.discard_queued(run.run_id)
        raise
    return _started(run), 202


@router.get("/api/v1/runs/<run_id>")
def get_run(run_id: str, step: Annotated[str | None, Query(min_length=1)] = None) -> dict[str, Any]:
    """The run with its steps (results past the byte budget omitted); ``step=KEY``: that step, in full."""
    from polos.runtime import runs

    try:
        view = runs.get_run(run_id, step)
    except runs.NoSuchStepError as exc:
        raise NotFound(str(exc)) from None
    if view is None:
        raise NotFound(f"run {run_id!r} does not exist")
    cost = costs.run_cost(run_id)  # under `polos dev` only
    if cost is not None:
        view["cost"] = cost
    return view


@router.get("/api/v1/runs")
def list_runs(
    workflow_id: Annotated[str | None, Query()] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(min_length=1, max_length=100_000)] = None,
    workflow_prefix: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    created_after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    created_before: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, Any]:
    """A page of runs, newest first; ``next_cursor`` continues it. ``workflow_prefix``: the runs of the
    workflows whose id starts with it; ``created_after``/``created_before``: ISO 8601 times, inclusive."""
    from polos.definition import WORKFLOW_ID
    from polos.runtime import runs

    if workflow_id is not None and not WORKFLOW_ID.fullmatch(workflow_id):
        raise ValidationFailed(f"workflow_id {workflow_id!r} is not a workflow id")
    workflow_ids = [workflow_id] if workflow_id is not None else sorted(manifest.current().workflows)
    if workflow_prefix is not None:
        workflow_ids = [wf for wf in workflow_ids if wf.startswith(workflow_prefix)]
    try:
        page = runs.list_runs(
            workflow_ids,
            status,
            limit,
            cursor,
            _instant("created_after", created_after),
            _instant("created_before", created_before),
        )
    except runs.InvalidCursorError as exc:
        raise ValidationFailed(str(exc)) from None
    for run in page.runs:
        cost = costs.run_cost(run["run_id"])  # under `polos dev` only
        if cost is not None:
            run["cost"] = cost
    return {"runs": page.runs, "next_cursor": page.next_cursor}


def _instant(name: str, text: str | None) -> str | None:
    """An ISO 8601 time with its zone as the runs store it (``...Z``); ``400`` naming ``name`` otherwise."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationFailed(
            f"{name}: {text!r} is not an ISO 8601 time with a zone (e.g. 2026-01-31T09:00:00Z)"
        )
    return utc_iso(moment.astimezone(UTC))


@router.get("/api/v1/executions/<execution_id>")
def get_execution(execution_id: str) -> dict[str, Any]:
    """The run in the Polos SDK's execution shape."""
    from polos.runtime import runs

    view = runs.get_execution(execution_id)
    if view is None:
        raise NotFound(f"execution {execution_id!r} does not exist")
    return view


class ResumeRequest(BaseModel):
    """The body of ``POST /api/v1/runs/{run_id}/resume``."""

    model_config = ConfigDict(extra="forbid")

    step_key: str = Field(min_length=1, max_length=512)
    data: dict[str, Any] | None = None


def _cancel(run_id: str, what: str) -> dict[str, Any]:
    from polos.runtime import control, runs

    found = control.cancel(run_id) if runs.valid_run_id(run_id) else None
    if found is None:
        raise NotFound(f"{what} {run_id!r} does not exist")
    run, changed = found
    if not changed and run.status != "cancelled":  # cancelling a cancelled run again is idempotent
        raise Conflict(f"{what} {run_id!r} is {run.status}; only an unfinished run can be cancelled")
    view = runs.get_run(run_id)
    return view if view is not None else {}


@router.post("/api/v1/runs/<run_id>/cancel")
def cancel_run(run_id: str) -> dict[str, Any]:
    """Cancel a run: at once when ``queued`` or ``waiting``, at its next step boundary when ``running``."""
    return _cancel(run_id, "run")


@router.post("/api/v1/executions/<execution_id>/cancel")
def cancel_execution(execution_id: str) -> dict[str, Any]:
    """The Polos SDK's ``cancel_execution``: the same as cancelling the run."""
    return _cancel(execution_id, "execution")


@router.post("/api/v1/runs/<run_id>/resume")
def resume_run(
    run_id: str,
    body: ResumeRequest,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_LENGTH)
    ] = None,
) -> dict[str, Any]:
    """Resume the run's ``suspend`` step ``step_key`` with ``data`` (the step's result); a retry with the
    same ``Idempotency-Key`` answers like the first request."""
    from polos.runtime import control, runs

    outcome = (
        control.resume(run_id, body.step_key, body.data, idempotency_key)
        if runs.valid_run_id(run_id)
        else "no_run"
    )
    if outcome == "no_run":
        raise NotFound(f"run {run_id!r} does not exist")
    if outcome == "no_step":
        raise NotFound(f"step_key: run {run_id!r} has no suspended step {body.step_key!r}")
    if outcome == "conflict":
        raise Conflict(f"step_key: step {body.step_key!r} of run {run_id!r} was already resumed or ended")
    view = runs.get_run(run_id)
    return view if view is not None else {}

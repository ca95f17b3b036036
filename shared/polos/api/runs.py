"""The runs API: direct invocation (``POST /api/v1/workflows/{id}/run``), reading and listing runs.

The API never imports user workflow code: a workflow is known from the manifest, and the payload is checked
against the handler's annotation by the worker (an invalid payload fails the run at once).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from pydantic import BaseModel, ConfigDict, Field

from polos import serde
from polos.api.errors import Conflict, IdempotencyConflict, NotFound, PayloadTooLarge, ValidationFailed
from polos.publish import idempotency, manifest
from polos.publish.fanout import FanoutError
from polos.runtime.status import RunStatus

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

    ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key`` are honoured (polos.runtime.slots);
    most other fields are those the Polos SDK sends; they are accepted and ignored (DESIGN §2).
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
    run_timeout_seconds: Any = None
    initial_state: Any = None
    otel_traceparent: Any = None


def _known_workflow(workflow_id: str) -> None:
    if workflow_id not in manifest.current().workflows:
        raise NotFound(f"workflow {workflow_id!r} does not exist")


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
    from polos.runtime import runs

    _known_workflow(workflow_id)
    try:
        payload_json = json.dumps(body.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValidationFailed(f"payload is not valid JSON: {exc}") from None
    if (problem := serde.unicode_problem(payload_json)) is not None:
        raise ValidationFailed(f"payload {problem}")
    size = len(payload_json.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"payload is {size} bytes as compact JSON; at most {MAX_PAYLOAD_BYTES} are allowed"
        )
    asked = {"name": body.queue_name, "limit": body.queue_concurrency_limit, "key": body.concurrency_key}
    queue_json = json.dumps(asked) if any(value is not None for value in asked.values()) else None
    run, created = runs.create_invoked(workflow_id, payload_json, idempotency_key, queue_json=queue_json)
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
    return view


@router.get("/api/v1/runs")
def list_runs(
    workflow_id: Annotated[str | None, Query()] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(min_length=1, max_length=100_000)] = None,
) -> dict[str, Any]:
    """A page of runs, newest first; ``next_cursor`` continues it."""
    from polos.definition import WORKFLOW_ID
    from polos.runtime import runs

    if workflow_id is not None and not WORKFLOW_ID.fullmatch(workflow_id):
        raise ValidationFailed(f"workflow_id {workflow_id!r} is not a workflow id")
    workflow_ids = [workflow_id] if workflow_id is not None else sorted(manifest.current().workflows)
    try:
        page = runs.list_runs(workflow_ids, status, limit, cursor)
    except runs.InvalidCursorError as exc:
        raise ValidationFailed(str(exc)) from None
    return {"runs": page.runs, "next_cursor": page.next_cursor}


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

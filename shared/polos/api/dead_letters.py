"""Dead letters of a workflow (DESIGN §2): ``GET .../dead-letters`` lists them, ``POST .../redrive`` moves
them back to the workflow's queue, reopening their failed runs (see ``polos.runtime.dead_letters``)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from polos.api.errors import NotFound
from polos.publish import manifest

# The runtime behind these routes is imported by the routes themselves: a cold start that serves a publish
# (most of them) never loads it (~8 ms of the API's import; bench/coldstart.py).
MAX_LISTED = 100  # dead letters on one page

router = Router()  # type: ignore[no-untyped-call]

DEFAULT_PAGE = 50


def _batch(workflow_id: str) -> bool:
    """Whether the workflow is a batch workflow; ``404`` when the app has no such workflow."""
    entry = manifest.current().workflows.get(workflow_id)
    if entry is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist")
    return entry.batch


@router.get("/api/v1/workflows/<workflow_id>/dead-letters")
def list_dead_letters(
    workflow_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = DEFAULT_PAGE,
) -> dict[str, Any]:
    """Up to ``limit`` dead letters (run id and event of each, not the event's data) and their count."""
    from polos.runtime import dead_letters

    return dead_letters.list_dead_letters(workflow_id, _batch(workflow_id), limit)


@router.post("/api/v1/workflows/<workflow_id>/dead-letters/redrive")
def redrive(workflow_id: str) -> dict[str, Any]:
    """Move the dead letters back to the workflow's queue: ``{"moved": N}`` (call again while N > 0)."""
    from polos.runtime import dead_letters

    return {"moved": dead_letters.redrive(workflow_id, _batch(workflow_id))}

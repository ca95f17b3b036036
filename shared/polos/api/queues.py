"""``GET /api/v1/queues/{name}``: a queue's limit, the runs holding its slots and its backlog by key."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from polos.api.errors import NotFound
from polos.publish import manifest

router = Router()  # type: ignore[no-untyped-call]


@router.get("/api/v1/queues/<name>")
def get_queue(
    name: str, key: Annotated[str | None, Query(min_length=1, max_length=256)] = None
) -> dict[str, Any]:
    """The queue as DESIGN §2 shows it (first page of its backlog); ``?key=K``: one concurrency key."""
    from polos.runtime import slots  # the runtime loads only when this route is asked for (cold start)

    declared = [wf for wf in manifest.current().workflows.values() if wf.queue == name]
    limit = next((wf.concurrency_limit for wf in declared if wf.concurrency_limit is not None), None)
    view = slots.queue_view(name, limit, key)
    if not declared and view["concurrency_limit"] is None and not view["backlog"]:
        raise NotFound(f"queue {name!r} is not declared by any workflow and has no runs waiting")
    view["workflows"] = sorted(wf.id for wf in declared)
    return view

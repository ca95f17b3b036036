"""``GET /api/v1/workflows`` (DESIGN §2): the app's workflows from the manifest, a page at a time.

Each shows its trigger (a topic, a schedule, or invoke only), its batch settings, the options of
``@workflow`` the manifest carries (queues, flow control, run limits: whatever of
:data:`~polos.publish.manifest.OPTION_NAMES` the workflow sets) and its dead letters: the dead-letter queue's
``ApproximateNumberOfMessages``, one ``GetQueueAttributes`` per workflow of the page (sent side by side),
so nothing a run does writes a counter; under ``polos dev`` also its ``cost`` (``polos.api.costs``).
Filters: ``prefix`` of the id, ``trigger`` type, ``topic``.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from botocore.exceptions import ClientError

from polos.api import costs
from polos.aws import settings
from polos.publish import manifest
from polos.publish.manifest import WorkflowEntry
from polos.topics import canonical_topic

logger = Logger(service="polos")
router = Router()  # type: ignore[no-untyped-call]

MAX_PAGE = 100
MAX_PARALLEL_READS = 16
TriggerType = Literal["event", "schedule", "invoke"]


def trigger_of(entry: WorkflowEntry) -> dict[str, Any]:
    """How runs of the workflow start: ``event`` (its topic), ``schedule`` (cron, zone) or ``invoke`` only."""
    if entry.topic is not None:
        return {"type": "event", "topic": entry.topic}
    if entry.schedule is not None:
        return {"type": "schedule", **entry.schedule}
    return {"type": "invoke"}


def dead_letter_count(workflow_id: str) -> int | None:
    """The dead-letter queue's approximate depth; ``None`` when SQS does not answer it (said in the log)."""
    url = settings.get_settings().dead_letter_queue_url(workflow_id)
    try:
        attributes = settings.sqs().get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    except ClientError as exc:
        logger.warning("dead-letter count unavailable", extra={"workflow_id": workflow_id, "error": str(exc)})
        return None
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def view(entry: WorkflowEntry, dead_letters: int | None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": entry.id,
        "trigger": trigger_of(entry),
        "batch": (
            {"size": entry.batch_size, "window_seconds": entry.batch_window_seconds} if entry.batch else None
        ),
        "options": entry.options,
        "dead_letters": dead_letters,
    }
    cost = costs.workflow_cost(entry.id)  # under `polos dev` only: $ per million runs so far
    if cost is not None:
        shown["cost"] = cost
    return shown


@router.get("/api/v1/workflows")
def list_workflows(
    prefix: Annotated[str | None, Query(max_length=64)] = None,
    trigger: Annotated[TriggerType | None, Query()] = None,
    topic: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    cursor: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, Any]:
    """A page of workflows in id order (``next_cursor``: the id to continue after)."""
    wanted = canonical_topic(topic) if topic is not None else None
    entries = [
        entry
        for wf_id, entry in sorted(manifest.current().workflows.items())
        if wf_id.startswith(prefix or "")
        and (cursor is None or wf_id > cursor)
        and (trigger is None or trigger_of(entry)["type"] == trigger)
        and (wanted is None or entry.topic == wanted)
    ]
    page = entries[:limit]
    with ThreadPoolExecutor(max_workers=min(len(page), MAX_PARALLEL_READS) or 1) as pool:
        counts = list(pool.map(lambda e: contextvars.copy_context().run(dead_letter_count, e.id), page))
    return {
        "workflows": [view(entry, count) for entry, count in zip(page, counts, strict=True)],
        "next_cursor": page[-1].id if len(entries) > limit else None,
    }

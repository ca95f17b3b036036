"""The events API: ``POST /api/v1/events/publish`` and ``GET /api/v1/events``.

The request models check the body's shape (types, unknown fields); the rules (counts, sizes, ids, topic)
are :mod:`polos.publish.publishing`'s, so the API and ``ctx.step.publish_event`` answer alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from pydantic import BaseModel, ConfigDict

from polos.api import keys
from polos.aws.responses import RESPONSE_BUDGET_BYTES, wire_size
from polos.publish import idempotency
from polos.publish.events import SEQUENCE_DIGITS, EventStore
from polos.publish.publishing import NewEvent, publish_events
from polos.topics import canonical_topic

router = Router()  # type: ignore[no-untyped-call]

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_SEQUENCE_ID = 10**SEQUENCE_DIGITS - 1


class PublishedEvent(BaseModel):
    """One event of a publish request."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any]
    event_type: str | None = None
    id: str | None = None


class PublishRequest(BaseModel):
    """The body of ``POST /api/v1/events/publish``."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    events: list[PublishedEvent]


@router.post("/api/v1/events/publish")
def publish(
    body: PublishRequest,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_LENGTH)
    ] = None,
) -> dict[str, Any]:
    """Store the events and send them to every subscribed workflow."""
    if canonical_topic(body.topic).startswith(keys.WORKFLOW_TOPIC_PREFIX):  # resumes runs
        keys.require(keys.ADMIN, f"publishing to {keys.WORKFLOW_TOPIC_PREFIX}… topics")
    digest = idempotency.request_hash(router.current_event.json_body) if idempotency_key is not None else None
    result = publish_events(
        body.topic,
        [NewEvent(id=event.id, data=event.data, event_type=event.event_type) for event in body.events],
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    return result.response


@router.get("/api/v1/events")
def list_events(
    topic: Annotated[str, Query()],
    after_sequence_id: Annotated[int, Query(ge=0, le=MAX_SEQUENCE_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> dict[str, Any]:
    """A page of the topic's events in sequence order, stopping early at the response byte budget."""
    page = EventStore().list_topic(
        canonical_topic(topic),
        after_sequence_id,
        limit,
        max_bytes=RESPONSE_BUDGET_BYTES,
        size=lambda event: wire_size(event.model_dump(mode="json")),
    )
    return {
        "events": [event.model_dump(mode="json") for event in page.events],
        "next_after_sequence_id": page.next_after_sequence_id,
    }

"""Events from a client, with the official Polos SDK's names (also importable as ``polos.features.events``).

``publish`` / ``batch_publish`` store events through ``POST /api/v1/events/publish``. ``stream_topic`` and
``stream_workflow`` are async iterators of stored events (:class:`~polos.payloads.EventItem`: ``id``,
``sequence_id``, ``topic``, ``event_type``, ``data``, ``created_at``). API Gateway HTTP APIs do not stream
responses, so they poll ``GET /api/v1/events`` (every ``poll_interval`` seconds while nothing is new).

``stream_workflow`` follows a run's own topic, ``workflow/<workflow_id>/<run_id>`` (a ``suspend`` step
publishes ``suspend_<key>`` with its data there) and ends when the run ends. It starts after the events
already stored, like the official client's stream starting "now", with one exception that makes it safe to
start after the run: a ``suspend_<key>`` event whose step is still waiting is yielded first, however
early it was published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from polos.client import PolosClient
from polos.payloads import EventItem

FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled", "skipped"})
DEFAULT_POLL_SECONDS = 0.5
_PAGE = 1000  # GET /api/v1/events' largest page
SUSPEND_PREFIX = "suspend_"


class EventData(BaseModel):
    """One event to publish: its ``data`` (a JSON object) and optional ``event_type``."""

    event_type: str | None = None
    data: dict[str, Any]


async def batch_publish(
    client: PolosClient,
    topic: str,
    events: list[EventData],
    execution_id: str | None = None,
    root_execution_id: str | None = None,
) -> list[int]:
    """Publish ``events`` to ``topic`` in one request; their sequence ids, in order. (``execution_id`` and
    ``root_execution_id`` are the official SDK's and mean nothing here.)"""
    del execution_id, root_execution_id
    if not events:
        return []
    answer = await client.publish(
        topic, [event.model_dump(mode="json", exclude_none=True) for event in events]
    )
    return [int(sequence_id) for sequence_id in answer["sequence_ids"]]


async def publish(
    client: PolosClient,
    topic: str,
    event_data: EventData,
    execution_id: str | None = None,
    root_execution_id: str | None = None,
) -> int:
    """Publish one event to ``topic``; its sequence id."""
    sequence_ids = await batch_publish(client, topic, [event_data], execution_id, root_execution_id)
    return sequence_ids[0]


async def _page(client: PolosClient, topic: str, after: int) -> tuple[list[EventItem], int | None]:
    answer = await client.list_events(topic, after_sequence_id=after, limit=_PAGE)
    events = [EventItem.model_validate(event) for event in answer["events"]]
    return events, answer.get("next_after_sequence_id")


async def _stored(client: PolosClient, topic: str, after: int) -> tuple[list[EventItem], int]:
    """The events stored after ``after`` up to now, and the last sequence id seen."""
    found: list[EventItem] = []
    while True:
        events, following = await _page(client, topic, after)
        found.extend(events)
        after = events[-1].sequence_id if events else after
        if following is None or not events:
            return found, after


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def stream_topic(
    client: PolosClient,
    topic: str,
    last_sequence_id: int | None = None,
    last_timestamp: datetime | None = None,
    *,
    poll_interval: float = DEFAULT_POLL_SECONDS,
) -> AsyncIterator[EventItem]:
    """The events of ``topic`` after ``last_sequence_id``, else after ``last_timestamp``, else those
    published from now on; it never ends by itself (break out of the loop). Starting "now" or at a time
    reads the topic's stored events once (one request per 1000): pass ``last_sequence_id`` to skip that."""
    if last_sequence_id is not None:
        after = last_sequence_id
    else:
        stored, after = await _stored(client, topic, 0)
        if last_timestamp is not None:
            since = _aware(last_timestamp)
            for event in stored:
                if event.created_at > since:
                    yield event
    while True:
        events, after = await _stored(client, topic, after)
        for event in events:
            yield event
        if not events:
            await asyncio.sleep(poll_interval)


async def stream_workflow(
    client: PolosClient,
    workflow_id: str,
    workflow_run_id: str,
    last_sequence_id: int | None = None,
    last_timestamp: datetime | None = None,
    *,
    poll_interval: float = DEFAULT_POLL_SECONDS,
) -> AsyncIterator[EventItem]:
    """The events of run ``workflow_run_id``'s topic (``workflow/<workflow_id>/<run_id>``) until the run
    ends: after ``last_sequence_id`` or ``last_timestamp`` when given, else the pending ``suspend_<key>``
    event of a step still waiting, then those published from now on (see the module)."""
    topic = f"workflow/{workflow_id}/{workflow_run_id}"
    if last_sequence_id is not None:
        after = last_sequence_id
    else:
        # The events first, then the run: a suspend step is journaled waiting before its event is stored,
        # so a suspend event seen here whose step the run shows waiting is one nobody has resumed yet.
        stored, after = await _stored(client, topic, 0)
        run = await client.get_run(workflow_run_id)
        waiting = {step["key"] for step in run.get("steps", []) if step.get("status") == "waiting"}
        since = None if last_timestamp is None else _aware(last_timestamp)
        for event in stored:
            pending = (event.event_type or "").startswith(SUSPEND_PREFIX) and (
                (event.event_type or "")[len(SUSPEND_PREFIX) :] in waiting
            )
            if pending or (since is not None and event.created_at > since):
                yield event
    while True:
        events, after = await _stored(client, topic, after)
        for event in events:
            yield event
        if events:
            continue
        run = await client.get_run(workflow_run_id)
        if run["status"] in FINISHED_STATUSES:
            events, after = await _stored(client, topic, after)  # what it published as it ended
            for event in events:
                yield event
            return
        await asyncio.sleep(poll_interval)

"""The event flow control tests' app: a debounced, a throttled and a rate-limited workflow, each recording
its run's start (the wait clock's time, the key and the event) in ``STARTS``."""

from __future__ import annotations

from threading import Lock
from typing import Any

from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock

DEBOUNCE_TOPIC = "flow/debounced"
THROTTLE_TOPIC = "flow/throttled"
RATE_TOPIC = "flow/limited"
DEBOUNCE = {"key": "data.user", "period": 10, "timeout": 30}
THROTTLE = {"key": "data.user", "limit": 2, "period": 10}
RATE_LIMIT = {"key": "data.user", "limit": 1, "period": 60}
STARTS: list[dict[str, Any]] = []  # every call of a run's first step
_LOCK = Lock()


def started(workflow_id: str, user: str, event_id: str, sequence_id: int) -> float:
    at = clock.now()
    with _LOCK:
        STARTS.append({"wf": workflow_id, "user": user, "event": event_id, "seq": sequence_id, "at": at})
    return at


async def _start(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    user = str(payload.data.get("user"))
    at = await ctx.step.run("start", started, ctx.workflow_id, user, payload.id, payload.sequence_id)
    return {"event": payload.id, "at": at}


@workflow(id="debounced", trigger_on_event=DEBOUNCE_TOPIC, debounce=DEBOUNCE)
async def debounced(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    return await _start(ctx, payload)


@workflow(id="throttled", trigger_on_event=THROTTLE_TOPIC, throttle=THROTTLE)
async def throttled(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    return await _start(ctx, payload)


@workflow(id="limited", trigger_on_event=RATE_TOPIC, rate_limit=RATE_LIMIT)
async def limited(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    return await _start(ctx, payload)


def app() -> App:
    return App(__name__, [debounced, throttled, limited])


def starts(workflow_id: str, user: str | None = None) -> list[dict[str, Any]]:
    with _LOCK:
        return [s for s in STARTS if s["wf"] == workflow_id and (user is None or s["user"] == user)]


def held_messages(workflow_id: str) -> dict[int, str]:
    """Every message of the workflow's queue taken off it, by its event's ``sequence_id`` (for a test to
    send them back one at a time, in an order of its own)."""
    queue_url = settings.get_settings().queue_url(workflow_id)
    held: dict[int, str] = {}
    while True:
        answer = settings.sqs().receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=900
        )
        if not answer.get("Messages"):
            return held
        for message in answer["Messages"]:
            event = WorkflowMessage.from_json(message["Body"]).event
            held[event.sequence_id if event is not None else 0] = message["Body"]
            settings.sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

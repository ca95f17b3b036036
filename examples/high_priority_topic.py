"""The documentation's "alternative approach" to event filtering: a topic per priority.

It reuses the id ``high-priority-handler`` of the app's filtering example, so it is its own app:
``polos dev --app examples/high_priority_topic.py``.
"""

from typing import Any

from polos import EventPayload, WorkflowContext, workflow


def send_alert(data: dict[str, Any]) -> bool:
    print(f"ALERT: {data}")
    return True


@workflow(id="notification-router", trigger_on_event="notifications/new")
async def notification_router(ctx: WorkflowContext, payload: EventPayload):
    notification_data = payload.data
    if payload.event_type == "high_priority":
        # Publish to specific topics
        await ctx.step.publish_event(
            "publish",
            topic="notifications/high_priority", # Specific topic
            data=notification_data
        )


@workflow(
    id="high-priority-handler",
    trigger_on_event="notifications/high_priority" # Only high priority
)
async def high_priority_handler(ctx: WorkflowContext, payload: EventPayload):
    # All events on this topic are high priority
    await ctx.step.run("alert", send_alert, payload.data)

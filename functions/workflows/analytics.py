from polos import BatchEventPayload, WorkflowContext, workflow

from .effects import insert_analytics


@workflow(
    id="batch-processor",
    trigger_on_event="analytics/events",
    batch_size=10, # Process up to 10 events
    batch_timeout_seconds=30 # Or wait max 30 seconds
)
async def batch_processor(ctx: WorkflowContext, payload: BatchEventPayload):
    # Multiple events in the payload
    events = payload.events
    print(f"Processing batch of {len(events)} events")
    # Extract all event data
    analytics_data = [event.data for event in events]
    # Process batch
    await ctx.step.run("batch_insert", insert_analytics, analytics_data)
    return {"processed": len(events)}

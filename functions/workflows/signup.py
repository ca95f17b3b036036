from polos import EventPayload, WorkflowContext, workflow

from .effects import create_sample_data, send_welcome_email


@workflow(
    id="user-signup-handler",
    trigger_on_event="user/signup"
)
async def user_signup_handler(ctx: WorkflowContext, payload: EventPayload):
    # Triggered when event published to "user.signup" topic
    user_id = payload.data["user_id"]
    email = payload.data["email"]
    # Send welcome email
    await ctx.step.run("send_welcome", send_welcome_email, user_id, email)
    # Create sample data
    await ctx.step.run("setup_account", create_sample_data, user_id)
    return {"status": "onboarded", "user_id": user_id}

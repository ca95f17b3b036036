"""Beyond the documentation's examples: a run that waits without holding anything, and a schedule."""

from polos import SchedulePayload, WorkflowContext, workflow
from pydantic import BaseModel

from .effects import log


class TrialInput(BaseModel):
    user_id: str
    trial_seconds: int = 14 * 24 * 3600


def start_trial(user_id: str) -> dict[str, str]:
    log.info("trial started for %s", user_id)
    return {"user_id": user_id}


def send_trial_reminder(user_id: str) -> dict[str, str]:
    log.info("trial reminder sent to %s", user_id)
    return {"reminded": user_id}


@workflow(id="trial-reminder")
async def trial_reminder(ctx: WorkflowContext, input: TrialInput):
    await ctx.step.run("start_trial", start_trial, input.user_id)
    # The run ends its attempt here and is woken when the trial is over (days, or seconds in the demo).
    await ctx.step.wait_for("trial_period", seconds=input.trial_seconds)
    await ctx.step.run("send_reminder", send_trial_reminder, input.user_id)
    return {"user_id": input.user_id, "reminded": True}


def compile_report(day: str) -> dict[str, str]:
    log.info("nightly report for %s", day)
    return {"report": day}


@workflow(id="nightly-report", schedule={"cron": "0 3 * * *", "timezone": "Europe/Paris"})
async def nightly_report(ctx: WorkflowContext, payload: SchedulePayload):
    day = payload.timestamp.date().isoformat()
    await ctx.step.run("compile", compile_report, day)
    return {"day": day, "previous": payload.last_timestamp.isoformat() if payload.last_timestamp else None}

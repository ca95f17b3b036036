"""Beyond the documentation's examples: runs that wait without holding anything (for a time, a human
approval, an event, a child run), and a schedule."""

from polos import SchedulePayload, StepExecutionError, WorkflowContext, workflow
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


class ExpenseInput(BaseModel):
    request_id: str
    amount: float


def submit_expense(request_id: str, amount: float) -> dict[str, object]:
    log.info("expense %s of %.2f submitted for approval", request_id, amount)
    return {"request_id": request_id, "amount": amount}


def pay_expense(request_id: str, approver: str) -> dict[str, str]:
    log.info("expense %s approved by %s: paid out", request_id, approver)
    return {"paid": request_id}


@workflow(id="expense-approval")
async def expense_approval(ctx: WorkflowContext, input: ExpenseInput):
    await ctx.step.run("submit", submit_expense, input.request_id, input.amount)
    # Waits (holding nothing) until someone answers POST /api/v1/runs/{run_id}/resume with step_key
    # "approval" — or `polos runs resume RUN_ID approval --data '{"approved": true, "by": "bob"}'`.
    decision = await ctx.step.suspend("approval", data={"amount": input.amount}, timeout=7 * 24 * 3600)
    if not decision.get("approved"):
        return {"request_id": input.request_id, "approved": False}
    await ctx.step.run("pay", pay_expense, input.request_id, str(decision.get("by", "someone")))
    return {"request_id": input.request_id, "approved": True}


class OrderInput(BaseModel):
    order_id: str
    payment_timeout_seconds: int = 3600


def reserve_stock(order_id: str) -> dict[str, str]:
    log.info("stock reserved for %s", order_id)
    return {"reserved": order_id}


def release_stock(order_id: str) -> dict[str, str]:
    log.info("no payment for %s in time: stock released", order_id)
    return {"released": order_id}


@workflow(id="order-fulfillment")
async def order_fulfillment(ctx: WorkflowContext, input: OrderInput):
    await ctx.step.run("reserve_stock", reserve_stock, input.order_id)
    try:
        # The first payment/succeeded event for this order, published after this step was reached.
        payment = await ctx.step.wait_for_event(
            "payment",
            "payment/succeeded",
            timeout=input.payment_timeout_seconds,
            match={"order_id": input.order_id},
        )
    except StepExecutionError:
        await ctx.step.run("release_stock", release_stock, input.order_id)
        return {"order_id": input.order_id, "paid": False}
    # A child run, started once however often this run replays; this run waits for its end.
    receipt = await ctx.step.invoke_and_wait(
        "receipt", "send-receipt", {"order_id": input.order_id, "amount": payment.data.get("amount", 0)}
    )
    return {"order_id": input.order_id, "paid": True, "receipt": receipt}


class ReceiptInput(BaseModel):
    order_id: str
    amount: float = 0


def email_receipt(order_id: str, amount: float) -> dict[str, object]:
    log.info("receipt for %s (%.2f) emailed", order_id, amount)
    return {"order_id": order_id, "amount": amount}


@workflow(id="send-receipt")
async def send_receipt(ctx: WorkflowContext, input: ReceiptInput):
    return await ctx.step.run("email", email_receipt, input.order_id, input.amount)

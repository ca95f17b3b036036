"""What a durable wait costs: a 1-step run with a 1-hour wait next to the same run without one.

Both runs go through the real handlers on moto (``polos.testing``'s in-process stack) with every AWS request
metered (``bench.meter``, DynamoDB units from a shadow client); the wait's cost is the difference. Counted:
SQS requests, DynamoDB read and write units (index writes included), and the Lambda invocation the wake-up
adds (its duration is taken as :data:`RESUME_MS`, an assumption: a replay with one step). The timers
function's fixed cost (16 Queries a minute, whatever the number of waits: about 691,000 a month) is not per
wait and is left out; nothing is billed per second of waiting. Next to it: the per-operation price of a
wait in Lambda durable functions and of a Wait state in Step Functions Standard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polos import WorkflowContext, workflow
from polos.app import App

from bench import prices
from bench.meter import Call, Meter

WAIT_HOURS = 1
RESUME_MS = 100  # assumed billed duration of the resumed attempt (a replay and one step)
WORKER_MEMORY_GB = 0.5


@workflow(id="bench-no-wait")
async def no_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(id="bench-wait")
async def with_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for("pause", hours=WAIT_HOURS)
    return str(await ctx.step.run("work", lambda: "done"))


@dataclass(frozen=True)
class WaitCost:
    """Requests and dollars one wait adds to a run."""

    requests: int
    sqs_requests: int
    read_units: float
    write_units: float
    lambda_invocations: int

    def usd_per_million(self) -> float:
        lambda_usd = self.lambda_invocations * (
            prices.LAMBDA_REQUEST.usd + RESUME_MS / 1000 * WORKER_MEMORY_GB * prices.LAMBDA_GB_SECOND_ARM.usd
        )
        return prices.MILLION * (
            self.sqs_requests * prices.SQS_REQUEST.usd
            + self.read_units * prices.DYNAMODB_READ_UNIT.usd
            + self.write_units * prices.DYNAMODB_WRITE_UNIT.usd
            + lambda_usd
        )


def _run(stack: Any, meter: Meter, workflow_id: str) -> list[Call]:
    meter.reset()
    run_id = stack.invoke(workflow_id, {})
    stack.drain()
    stack.advance(hours=WAIT_HOURS)
    stack.drain()
    if stack.run(run_id)["status"] != "completed":
        raise RuntimeError(f"the {workflow_id} run did not complete")
    return [call for call in meter.calls if _billed_per_run(call)]


def _billed_per_run(call: Call) -> bool:
    """Leaves out what is not per run in the cloud: the timers sweeps' empty Queries (the timers function's
    fixed cost), the local mapping's empty receives and queue-depth checks (Lambda's pollers' own)."""
    if call.service == "sqs":
        sends_or_deletes = ("SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch")
        return call.operation in sends_or_deletes or (call.operation == "ReceiveMessage" and not call.empty)
    key = str(call.params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", ""))
    return not (call.operation == "Query" and key.startswith("timer#") and call.read_units <= 0.5)


def measure() -> WaitCost:
    """The requests and units a 1-hour wait adds to a 1-step invoked run."""
    import boto3
    from polos.aws import settings
    from polos.testing import local_stack

    with local_stack(App("bench-waits", [no_wait, with_wait])) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        plain = _run(stack, meter, "bench-no-wait")
        waited = _run(stack, meter, "bench-wait")
        meter.detach()

    def total(calls: list[Call], attribute: str) -> float:
        return sum(float(getattr(call, attribute)) for call in calls)

    sqs = [call for call in waited if call.service == "sqs"]
    sqs_plain = [call for call in plain if call.service == "sqs"]
    return WaitCost(
        requests=len(waited) - len(plain),
        sqs_requests=int(total(sqs, "billed_requests") - total(sqs_plain, "billed_requests")),
        read_units=total(waited, "read_units") - total(plain, "read_units"),
        write_units=total(waited, "write_units") - total(plain, "write_units"),
        lambda_invocations=1,  # the resumed attempt
    )

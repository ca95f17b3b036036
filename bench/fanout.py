"""``python -m bench --only fanout``: what one child of a ``batch_invoke_and_wait`` costs.

A parent fans out to :data:`CHILDREN` children (each a 1-step workflow) and waits for them; everything goes
through the real handlers on moto (``polos.testing``'s in-process stack) with every AWS request metered
(``infra.metering``, DynamoDB units from a shadow client), counted like the waits benchmark counts a run
(:func:`bench.waits._billed_per_run`), plus the worker invocations the drain made (each billed
:data:`bench.waits.RESUME_MS` at 512 MB, an assumption). The whole bill — the parent's start, its children
started, run, their ends counted, the parent's one resume — divided by the children.

Next to it: Lambda durable functions' ``map`` per item at list prices. Each item runs in its own child
context and checkpoints its result (https://aws.github.io/aws-durable-execution-docs/sdk-reference/operations/map),
so a 1-step item is two durable operations (the child context and its step) at
:data:`infra.metering.prices.DURABLE_OPERATION`; the map's own operation is shared by the items and its
Lambda compute is left out, so that reference is a lower bound. Target (issue 24): at most 1.5 times it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polos import BatchWorkflowInput, WorkflowContext, workflow
from polos.app import App

from bench import waits
from infra.metering import prices
from infra.metering.meter import Meter

CHILDREN = 100
OPERATIONS_PER_MAP_ITEM = 2  # the item's child context and its one step
TARGET_RATIO = 1.5


@workflow(id="bench-fan-child")
async def fan_child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    return int(await ctx.step.run("work", lambda: payload["n"]))


@workflow(id="bench-fan-parent")
async def fan_parent(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    inputs = [BatchWorkflowInput(id="bench-fan-child", payload={"n": n}) for n in range(payload["children"])]
    results = await ctx.step.batch_invoke_and_wait("children", inputs)
    return sum(1 for result in results if result.success)


@dataclass(frozen=True)
class FanOutCost:
    children: int
    bill: waits.WaitCost  # the requests, units and invocations of the whole fan-out

    @property
    def usd_per_million_children(self) -> float:
        return self.bill.usd_per_million() / self.children

    @property
    def map_usd_per_million_items(self) -> float:
        return OPERATIONS_PER_MAP_ITEM * prices.DURABLE_OPERATION.usd * prices.MILLION

    @property
    def ratio(self) -> float:
        return self.usd_per_million_children / self.map_usd_per_million_items

    @property
    def passed(self) -> bool:
        return self.ratio <= TARGET_RATIO


def measure(children: int = CHILDREN) -> FanOutCost:
    """Meter one fan-out of ``children`` 1-step children, start to the parent's completion."""
    import boto3
    from polos.aws import settings
    from polos.testing import local_stack

    with local_stack(App("bench-fanout", [fan_child, fan_parent])) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        run_id = stack.invoke("bench-fan-parent", {"children": children})
        invocations = stack.drain()
        meter.detach()
        run = stack.run(run_id)
        if run["status"] != "completed" or run["result"] != children:
            raise RuntimeError(f"the fan-out did not complete with {children} children: {run['status']}")
    calls = [call for call in meter.calls if waits._billed_per_run(call)]
    bill = waits.WaitCost(
        requests=len(calls),
        sqs_requests=int(sum(call.billed_requests for call in calls if call.service == "sqs")),
        read_units=sum(call.read_units for call in calls),
        write_units=sum(call.write_units for call in calls),
        lambda_invocations=invocations,
    )
    return FanOutCost(children, bill)


def report(cost: FanOutCost) -> str:
    bill, n = cost.bill, cost.children
    verdict = "PASS" if cost.passed else "FAIL"
    return "\n".join(
        [
            f"fan-out: one batch_invoke_and_wait of {n} children (1-step workflows), per child",
            f"  Polos:                    ${cost.usd_per_million_children:.2f} per million children "
            f"({bill.requests / n:.2f} requests, {bill.write_units / n:.2f} WRU, "
            f"{bill.read_units / n:.2f} RRU, {bill.sqs_requests / n:.2f} SQS, "
            f"{bill.lambda_invocations / n:.2f} invocations)",
            f"  Lambda durable functions: ${cost.map_usd_per_million_items:.2f} per million map items "
            f"({OPERATIONS_PER_MAP_ITEM} operations at "
            f"${prices.DURABLE_OPERATION.usd * prices.MILLION:.2f}/M)",
            f"  ratio {cost.ratio:.2f}x, target <= {TARGET_RATIO}x: {verdict}",
        ]
    )


def main(*, smoke: bool = False) -> int:
    cost = measure(10 if smoke else CHILDREN)
    print(report(cost))
    return 0 if cost.passed else 1

"""What a queue's concurrency slot costs a run, and what a queued run costs while it waits.

The headline's shape (1 KB events, 10 per publish, a 1-step single-event workflow) twice on moto with every
request metered (DynamoDB units from a shadow client): once without a queue, once on a queue whose limit
never binds. The difference per run is the slot's take and free (target: at most 2 write units). Then the
same on ``strict_order`` workflows: the start-order registry's requests (:mod:`polos.publish.start_order`:
the publish's item per request and key, the admission's removal of the run's id), told apart by their
``qorder#`` items and reported per event with one key per request and with a distinct key per event. Then a
queue of limit 1 whose slot is held: a run queues; everything billed while it waits (an hour on the testing
clock) is counted (target: nothing), and the run starts when the slot is freed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from polos import EventPayload, Queue, WorkflowContext, workflow
from polos.app import App

from bench.waits import _billed_per_run
from bench.workload import sample_event
from infra.metering import prices
from infra.metering.meter import Call, Meter

EVENTS = 20  # two publishes of 10
PER_REQUEST = 10
TARGET_EXTRA_WRITE_UNITS = 2.0
UNBOUND_LIMIT = 1000


@workflow(id="bench-slot-none", trigger_on_event="bench/slots/none")
async def no_queue(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(
    id="bench-slot-free",
    trigger_on_event="bench/slots/free",
    queue=Queue("bench-unbound", concurrency_limit=UNBOUND_LIMIT),
)
async def unbound_queue(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(
    id="bench-slot-strict",
    trigger_on_event="bench/slots/strict",
    queue=Queue("bench-strict", concurrency_limit=UNBOUND_LIMIT),
    strict_order=True,
)
async def strict_queue(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(
    id="bench-slot-keyed",
    trigger_on_event="bench/slots/keyed",
    queue=Queue("bench-keyed", concurrency_limit=UNBOUND_LIMIT),
    concurrency_key="data.order_id",  # a distinct key per event
    strict_order=True,
)
async def keyed_queue(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@workflow(
    id="bench-slot-one", trigger_on_event="bench/slots/one", queue=Queue("bench-one", concurrency_limit=1)
)
async def single_lane(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("work", lambda: "done"))


@dataclass(frozen=True)
class SlotCost:
    """Per run: the units a non-binding slot adds (take and free, and the start-order registry apart);
    and what one queued run was billed while it waited."""

    extra_write_units: float  # take + free: the queue's slot, all a run without strict_order adds
    extra_read_units: float
    extra_requests: float
    queued_requests: int  # billed requests while the run was queued (between parking and the hand-on)
    unordered_registry_requests: int = 0  # registry requests of the runs without strict_order: none
    order_write_units: float = 0.0  # strict_order's registry per event, 10 events/request, one key
    order_write_units_keyed: float = 0.0  # the same with a distinct key per event
    order_read_units: float = 0.0  # start-order registry reads per event, 10 events/request, one key

    def usd_per_million(self) -> float:
        return prices.MILLION * (
            self.extra_write_units * prices.DYNAMODB_WRITE_UNIT.usd
            + self.extra_read_units * prices.DYNAMODB_READ_UNIT.usd
        )


def _units(calls: list[Call]) -> tuple[float, float, int]:
    ddb = [call for call in calls if call.service == "dynamodb"]
    return sum(c.write_units for c in ddb), sum(c.read_units for c in ddb), len(calls)


def _on_registry(call: Call) -> bool:
    """A request on start-order registry items (``qorder#``), the publish's or a run's."""
    return call.service == "dynamodb" and "qorder#" in str(call.params)


def measure() -> SlotCost:
    import boto3
    from polos.aws import settings
    from polos.runtime import slots
    from polos.testing import local_stack

    workflows = [no_queue, unbound_queue, strict_queue, keyed_queue, single_lane]
    with local_stack(App("bench-slots", workflows)) as stack:
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        meter.attach(settings.dynamodb(), settings.sqs())
        billed: dict[str, tuple[float, float, int]] = {}
        ordering: dict[str, tuple[float, float, int]] = {}  # the start-order registry's, publishes and runs
        for topic in ("bench/slots/none", "bench/slots/free", "bench/slots/strict", "bench/slots/keyed"):
            meter.reset()
            for start in range(0, EVENTS, PER_REQUEST):
                stack.publish(topic, [sample_event(n) for n in range(start, start + PER_REQUEST)])
            published = list(meter.calls)
            meter.reset()  # the runs apart (the publishes are the same but for the registry)
            stack.drain()
            runs = [call for call in meter.calls if _billed_per_run(call)]
            ordering[topic] = _units([call for call in published + runs if _on_registry(call)])
            billed[topic] = _units(runs)
        plain, slotted = billed["bench/slots/none"], billed["bench/slots/free"]
        spec = slots.SlotSpec("bench-one", 1, None, "0")
        holder = slots.Slots().take(spec, "run_bench_holder", time.time() + 7200)
        stack.publish("bench/slots/one", [sample_event(0)])
        stack.drain()  # the run queues
        meter.reset()
        stack.advance(hours=1)
        stack.drain()
        waiting = [call for call in meter.calls if _billed_per_run(call)]
        slots.release(holder, "run_bench_holder")
        stack.drain()
        if {run["status"] for run in stack.runs("bench-slot-one")} != {"completed"}:
            raise RuntimeError("the queued run did not start when its slot was freed")
        meter.detach()
    return SlotCost(
        extra_write_units=(slotted[0] - plain[0]) / EVENTS,
        extra_read_units=(slotted[1] - plain[1]) / EVENTS,
        extra_requests=(slotted[2] - plain[2]) / EVENTS,
        queued_requests=len(waiting),
        unordered_registry_requests=ordering["bench/slots/free"][2],
        order_write_units=ordering["bench/slots/strict"][0] / EVENTS,
        order_write_units_keyed=ordering["bench/slots/keyed"][0] / EVENTS,
        order_read_units=ordering["bench/slots/strict"][1] / EVENTS,
    )

"""A wake-up delivered in one batch with other messages of its run (an invocation, an event or a schedule's
firing) wakes the run, whatever their order.

After the crash the guarantees cover (the worker dies right after marking the run ``waiting``, before it
acknowledged the run's first message), that message comes back in the same batch as the due timer's
``resume``, with a client's duplicate of it: every order of the three records must wake the run once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from polos import EventPayload, SchedulePayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime.journal import scheduled_run_id
from polos.testing import Stack, local_stack

from infra.local.faults.config import AwsFaults
from infra.local.mapping import EventSourceMapping
from infra.metering.meter import Call, Meter

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


async def nap(ctx: WorkflowContext, tag: str) -> str:
    await ctx.step.run("before", count, f"{tag}:before")
    await ctx.step.wait_for("nap", minutes=5)
    return await ctx.step.run("after", count, f"{tag}:after")


@workflow(id="wg-invoked")
async def invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await nap(ctx, str(payload["tag"]))


@workflow(id="wg-evented", trigger_on_event="wg/go")
async def evented(ctx: WorkflowContext, payload: EventPayload) -> str:
    return await nap(ctx, str(payload.data["tag"]))


@workflow(id="wg-scheduled", schedule="0 3 1 1 *")
async def scheduled(ctx: WorkflowContext, payload: SchedulePayload) -> str:
    return await nap(ctx, "scheduled")


APP = App("wake-grouping", [invoked, evented, scheduled])
FIRED = "2026-01-01T03:00:00Z"
ORDERS = list(itertools.permutations(["first", "duplicate", "resume"]))


def faults_but_delivery() -> AwsFaults:
    """The suite's AWS faults (``make chaos``) without those of delivery, which this test arranges itself:
    the exact batch, its order and its one duplicate (a random extra copy or shuffle would undo them), and
    without throttles: the test crashes the worker right after one request (the ``waiting`` write), and a
    throttle's retry of that request moves the crash (as it does for the crash matrices)."""
    return replace(AwsFaults.resolve(), shuffle=False, duplicates=None, pollers=None, throttle=None)


def marks_waiting(call: Call) -> bool:
    """The worker's ``finish`` that parks the run ``waiting``."""
    values = call.params.get("ExpressionAttributeValues", {})
    return call.ok and call.operation == "UpdateItem" and values.get(":status") == {"S": "waiting"}


def mapping_of(stack: Stack, workflow_id: str) -> EventSourceMapping:
    return next(m for m in stack._local.mappings if m.spec.workflow_id == workflow_id)


def first_message(stack: Stack, workflow_id: str, tag: str) -> tuple[Callable[[], str], WorkflowMessage]:
    """Start a run; its id (read once the worker ran it) and a copy of its first message."""
    if workflow_id == "wg-invoked":
        run_id = stack.invoke(workflow_id, {"tag": tag})
        return (lambda: run_id), WorkflowMessage(workflow_id, "invoke", run_id=run_id)
    if workflow_id == "wg-scheduled":
        firing = WorkflowMessage(workflow_id, "schedule", scheduled_time=FIRED)
        deliver([firing])
        return (lambda: scheduled_run_id(workflow_id, FIRED)), firing
    stack.publish("wg/go", [{"data": {"tag": tag}}])
    (event,) = stack.events("wg/go")
    message = WorkflowMessage.from_json(
        WorkflowMessage(workflow_id, "event", event=EventPayload.model_validate(event)).to_json()
    )
    return (lambda: stack.runs(workflow_id)[0]["run_id"]), message


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
@pytest.mark.parametrize("workflow_id", ["wg-invoked", "wg-evented", "wg-scheduled"])
def test_a_due_wake_up_in_a_batch_with_the_runs_first_message_wakes_it_in_any_order(
    workflow_id: str, order: tuple[str, ...]
) -> None:
    calls.clear()
    tag = "-".join(order)
    faults = faults_but_delivery()
    with local_stack(APP, aws_faults=faults.describe(), faults_seed=faults.seed) as stack:
        mapping = mapping_of(stack, workflow_id)
        run_id, first = first_message(stack, workflow_id, tag)
        meter = Meter()
        meter.attach(settings.dynamodb(), settings.sqs())
        meter.crash_after(1, where=marks_waiting)
        crashed = mapping.poll(wait_seconds=0, flush=True)
        meter.detach()
        assert crashed is not None and crashed.error is not None, "the worker did not die after `waiting`"
        assert stack.run(run_id())["status"] == "waiting"

        deliver([first])  # a client's retry, a redelivery of the original: the same run's first message
        stack.advance(minutes=6)  # the timer's resume is due, and the crashed delivery visible again
        batch = mapping.collect(wait_seconds=0, flush=True)
        kinds = {m["MessageId"]: WorkflowMessage.from_json(m["Body"]).kind for m in batch}
        assert sorted(kinds.values()) == sorted(["resume", first.kind, first.kind]), kinds
        by_role: dict[str, Any] = {"resume": next(m for m in batch if kinds[m["MessageId"]] == "resume")}
        by_role["first"], by_role["duplicate"] = [m for m in batch if kinds[m["MessageId"]] != "resume"]
        mapping.deliver([by_role[role] for role in order])

        run = stack.run(run_id())
        assert run["status"] == "completed", run
        label = "scheduled" if workflow_id == "wg-scheduled" else tag
        assert calls == {f"{label}:before": 1, f"{label}:after": 1}

"""A crash right after any AWS request of waiting, waking or resuming loses no wake-up and runs no
journaled step again. The crash is the meter's ``Crash`` (a ``BaseException``), raised once the N-th
request has taken effect: a worker invocation dies (its messages come back), or a timers sweep dies (the
next sweep runs)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.crash_points import crash_points
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime.timers import SHARDS
from polos.testing import Stack, local_stack

from infra.metering.meter import Crash, Meter

pytestmark = pytest.mark.usefixtures("steady_requests")

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="napper")
async def napper(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    tag = payload["tag"]  # one run per crash point, on one stack: each counts its own calls
    await ctx.step.run("before", count, f"{tag}:before")
    await ctx.step.wait_for("nap", minutes=payload["minutes"])
    return await ctx.step.run("after", count, f"{tag}:after")


APP = App("wait-crashes", [napper])
ROUNDS = 8


def lifecycle(stack: Stack, minutes: int, crash_at: int | None) -> int:
    """Invoke, wait, wake and finish one run, crashing after request ``crash_at``; the requests made."""
    tag = f"point-{crash_at}"
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    run_id = stack.invoke("napper", {"minutes": minutes, "tag": tag})

    def status() -> str:
        with meter.tag("test"):  # the test's own reads of the run are not crash points
            return str(stack.run(run_id)["status"])

    meter.reset()
    meter.crash_after(crash_at, where=lambda call: call.tag != "test")
    for _ in range(ROUNDS):
        try:
            stack.drain()
        except Crash:  # the timers function died mid-sweep; it runs again next time
            continue
        if status() == "completed":
            break
        stack.advance(minutes=minutes + 1)
    made = len([call for call in meter.calls if call.tag != "test"])
    meter.detach()
    assert not meter.crash_pending, f"no crash happened at request {crash_at}"
    check(stack, run_id, tag)
    return made


def check(stack: Stack, run_id: str, tag: str) -> None:
    run = stack.run(run_id)
    assert run["status"] == "completed", run
    assert {calls.get(f"{tag}:before"), calls.get(f"{tag}:after")} == {1}, "a journaled step ran again"
    assert [step["status"] for step in run["steps"]] == ["completed"] * 3
    assert not stack.dead_letters("napper")
    for shard in range(SHARDS):  # every timer was fired and removed
        left = settings.dynamodb().query(
            TableName=settings.get_settings().runs_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"timer#{shard}"}},
        )
        assert not left["Items"]


@pytest.mark.timeout(900)  # a fresh stack per crash point: ~20 points, a second or two each
@pytest.mark.parametrize("minutes", [5, 20], ids=["delayed-message", "timer-item"])
def test_a_crash_after_any_request_of_waiting_waking_or_resuming_loses_nothing(minutes: int) -> None:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:  # one stack: each crash point runs its own run
        points = lifecycle(stack, minutes, crash_at=None)
        assert points >= 8  # load, lease, journal, wait step, timer, finish; sweep, resume: load, lease, ...
        for n in crash_points(points):
            lifecycle(stack, minutes, crash_at=n)

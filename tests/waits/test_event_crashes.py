"""A crash right after any AWS request of registering a waiter, matching an event and resuming loses no
event and delivers none twice. The workflow side dies as a worker invocation (its message comes back);
a publish that dies is retried by its client with the same ``Idempotency-Key``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers.crash_points import crash_points
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.testing import local_stack

from infra.metering.meter import Crash, Meter

pytestmark = pytest.mark.usefixtures("steady_requests")
calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="payer")
async def payer(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("before", count, "before")
    paid = await ctx.step.wait_for_event("paid", "pay/done", match={"id": payload["id"]})
    await asyncio.sleep(payload.get("stall", 0))  # a slow machine, between taking the lease and a step call
    await ctx.step.run("after", count, "after")
    return int(paid.data["n"])


APP = App("event-crashes", [payer])


def lifecycle(crash_at: int | None, stall: float = 0) -> int:
    """Invoke, wait, publish the awaited event and resume, crashing after the ``crash_at``-th request (of
    all but the test's own); returns the number of requests made."""
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        meter = Meter()
        meter.attach(settings.dynamodb(), settings.sqs())
        run_id = stack.invoke("payer", {"id": "x", "stall": stall})
        meter.reset()
        meter.crash_after(crash_at, where=lambda call: call.tag != "test")
        published = False
        for _ in range(12):
            try:
                if not published:
                    stack.drain()
                    stack.publish("pay/done", [{"data": {"id": "x", "n": 7}}], idempotency_key="k")
                    published = True
                stack.drain()
            except Crash:
                continue
            with meter.tag("test"):
                if stack.run(run_id)["status"] == "completed":
                    break
        made = len([call for call in meter.calls if call.tag != "test"])
        meter.detach()
        assert not meter.crash_pending, f"no crash happened at request {crash_at}"
        run = stack.run(run_id)
        assert run["status"] == "completed" and run["result"] == 7, run
        assert calls == {"before": 1, "after": 1}
        return made


@pytest.mark.timeout(900)
def test_a_crash_after_any_request_of_registering_matching_or_resuming_loses_no_event() -> None:
    points = lifecycle(None)
    assert points >= 10
    for n in crash_points(points):
        lifecycle(n)


def test_a_slow_machine_makes_the_same_requests_so_every_crash_point_is_reached() -> None:
    """The flake of a loaded run: a probe that stalled 1 s before a step call made one request more (a
    cancel check), so the last crash point lay past the end of every crashed run."""
    assert lifecycle(None, stall=1.2) == lifecycle(None)

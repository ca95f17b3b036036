"""Durable waits on a timer: the run ends its attempt as ``waiting`` and resumes once, when its time comes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.runtime import timers
from polos.runtime.waits import WaitingFor
from polos.testing import Stack, local_stack

calls: dict[str, int] = {}


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="sleeper")
async def sleeper(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.step.run("before", count, "before")
    await ctx.step.wait_for("nap", **payload["wait"])
    await ctx.step.run("after", count, "after")
    return {"woke": True}


@workflow(id="until-then")
async def until_then(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_until("then", datetime.fromisoformat(payload["at"]))
    return await ctx.step.run("done", count, "done")


@workflow(id="two-naps")
async def two_naps(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.wait_for("first", minutes=5)
    await ctx.step.wait_for("second", days=3)
    await ctx.step.run("end", count, "end")
    return 2


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(App("waits", [sleeper, until_then, two_naps])) as opened:
        yield opened


def test_a_two_hour_wait_ends_the_attempt_then_resumes_once_after_the_time(stack: Stack) -> None:
    run_id = stack.invoke("sleeper", {"wait": {"hours": 2}})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "waiting"
    assert run["waiting_for"]["kind"] == "timer" and run["waiting_for"]["step"] == "nap"
    assert [step["status"] for step in run["steps"]] == ["completed", "waiting"]
    assert calls == {"before": 1}
    assert [r["run_id"] for r in stack.runs(status="waiting")] == [run_id]

    stack.advance(hours=1, minutes=59)
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"  # not a second early

    stack.advance(minutes=1)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"woke": True}
    assert "waiting_for" not in run
    assert calls == {"before": 1, "after": 1}  # the journaled step before the wait never ran again
    assert [step["status"] for step in run["steps"]] == ["completed", "completed", "completed"]


def test_a_short_wait_is_a_delayed_message_and_a_long_one_a_timer_item(stack: Stack) -> None:
    short = stack.invoke("sleeper", {"wait": {"minutes": 5}})
    long = stack.invoke("sleeper", {"wait": {"days": 3}})
    stack.drain()
    assert {stack.run(short)["status"], stack.run(long)["status"]} == {"waiting"}
    stack.advance(minutes=5)
    stack.drain()
    assert stack.run(short)["status"] == "completed"
    assert stack.run(long)["status"] == "waiting"
    stack.advance(days=3)
    stack.drain()
    assert stack.run(long)["status"] == "completed"


def test_wait_until_a_past_time_returns_at_once_and_a_future_one_waits(stack: Stack) -> None:
    past = stack.invoke("until-then", {"at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
    future = stack.invoke("until-then", {"at": (datetime.now(UTC) + timedelta(days=2)).isoformat()})
    stack.drain()
    assert stack.run(past)["status"] == "completed"
    assert stack.run(future)["status"] == "waiting"
    stack.advance(days=2, seconds=1)
    stack.drain()
    assert stack.run(future)["status"] == "completed"


def test_consecutive_waits_each_resume_once(stack: Stack) -> None:
    run_id = stack.invoke("two-naps", {})
    stack.drain()
    assert stack.run(run_id)["waiting_for"]["step"] == "first"
    stack.advance(minutes=5)
    stack.drain()
    assert stack.run(run_id)["waiting_for"]["step"] == "second"
    stack.advance(days=3)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and calls == {"end": 1}
    assert run["attempts"] == 3  # the first delivery and one per wake-up


def test_duplicate_wake_ups_resume_the_run_once(stack: Stack) -> None:
    run_id = stack.invoke("sleeper", {"wait": {"minutes": 20}})
    stack.drain()
    for _ in range(3):  # a timer fired three times (a sweep that crashed before deleting, twice)
        timers.arm("sleeper", run_id, WaitingFor("nap", "timer", until=_until(stack, run_id)))
    stack.advance(minutes=21)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and calls == {"before": 1, "after": 1}
    assert run["attempts"] == 2


def test_a_crash_right_after_the_wait_is_journaled_loses_no_wake_up(stack: Stack) -> None:
    stack.crash_after_step("nap")  # dies after journaling the waiting step, before the timer is set
    run_id = stack.invoke("sleeper", {"wait": {"hours": 1}})
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"  # the redelivery set the timer and parked the run
    stack.advance(hours=1)
    stack.drain()
    assert stack.run(run_id)["status"] == "completed"
    assert calls == {"before": 1, "after": 1}


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        ({"days": 366}, r"from 0 to 365 days"),
        ({"seconds": -1}, r"from 0 to 365 days"),
        ({"minutes": "5"}, r"minutes must be a number"),
    ],
)
def test_bad_waits_fail_the_run_with_a_clear_error(stack: Stack, wait: dict[str, Any], message: str) -> None:
    run_id = stack.invoke("sleeper", {"wait": wait})
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "failed" and run["attempts"] == 1  # at once: retrying cannot help
    assert run["error"]["type"] == "StepArgumentError"
    assert re.search(message, run["error"]["message"]), run["error"]


def _until(stack: Stack, run_id: str) -> float:
    waiting = stack.run(run_id)["waiting_for"]
    return datetime.fromisoformat(waiting["until"].replace("Z", "+00:00")).timestamp()


def test_a_wait_longer_than_the_retention_keeps_its_run(stack: Stack) -> None:
    """Run items expire after the retention (30 days by default); a 60-day wait must not lose its run."""
    from polos.aws import settings

    run_id = stack.invoke("sleeper", {"wait": {"days": 60}})
    stack.drain()
    config = settings.get_settings()
    items = settings.dynamodb().query(
        TableName=config.runs_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"run#{run_id}"}},
    )["Items"]
    until = _until(stack, run_id)
    kept_until = until + config.retention_seconds - 1
    assert items and all(int(item["expires_at"]["N"]) >= kept_until for item in items)
    stack.advance(days=60)
    stack.drain()
    assert stack.run(run_id)["status"] == "completed"

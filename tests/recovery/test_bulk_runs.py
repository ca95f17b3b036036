"""Bulk ``POST /api/v1/runs/cancel`` and ``POST /api/v1/runs/rerun``: every run of a workflow matching a
filter, ``{"matched": N}``, idempotent, with a cursor past ``limit`` (at most 10,000) or the API's time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.runtime import recovery
from polos.testing import Stack, local_stack

calls: list[str] = []


def call(name: str) -> str:
    calls.append(name)
    if name.startswith("fail"):
        raise RuntimeError("bug")
    return name


@workflow(id="pauser")
async def pauser(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for("nap", hours=1)
    return "done"


@workflow(id="flaky")
async def flaky(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await ctx.step.run("work", call, payload["name"], max_retries=0)


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    with local_stack(App("bulk", [pauser, flaky]), max_attempts=1) as opened:
        yield opened


def bulk(stack: Stack, action: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else None
    answer = stack.request("POST", f"/api/v1/runs/{action}", body, headers)
    assert answer.status == 200, answer.body
    return answer.body


def test_bulk_cancel_of_3_waiting_runs_answers_matched_3(stack: Stack) -> None:
    waiting = [stack.invoke("pauser", {}) for _ in range(3)]
    done = stack.invoke("flaky", {"name": "ok"})
    stack.drain()
    assert {stack.run(run_id)["status"] for run_id in waiting} == {"waiting"}
    answer = bulk(stack, "cancel", {"workflow_id": "pauser", "status": "waiting"})
    assert answer == {"matched": 3, "next_cursor": None}
    assert {stack.run(run_id)["status"] for run_id in waiting} == {"cancelled"}
    assert stack.run(done)["status"] == "completed"
    again = bulk(stack, "cancel", {"workflow_id": "pauser", "status": "waiting"})
    assert again["matched"] == 3  # a retried call answers the same, and cancels nothing twice
    assert {stack.run(run_id)["status"] for run_id in waiting} == {"cancelled"}


def test_bulk_rerun_of_failed_runs_reruns_each_once_however_often_retried(stack: Stack) -> None:
    failed = [stack.invoke("flaky", {"name": "fail-1"}), stack.invoke("flaky", {"name": "fail-2"})]
    stack.invoke("flaky", {"name": "ok"})
    stack.drain()
    calls.clear()
    body = {"workflow_id": "flaky", "status": "failed"}
    assert bulk(stack, "rerun", body)["matched"] == 2
    assert bulk(stack, "rerun", body)["matched"] == 2  # a retry: the same reruns, none made again
    stack.drain()
    reruns = [run for run in stack.runs("flaky") if run.get("rerun_of")]
    assert sorted(run["rerun_of"] for run in reruns) == sorted(failed)
    assert sorted(calls) == ["fail-1", "fail-2"]
    # another operation (its own key) reruns again, and never the reruns it made itself
    assert bulk(stack, "rerun", body, key="second")["matched"] == 4


def test_a_limit_gives_a_cursor_and_the_pages_together_act_on_every_run_once(stack: Stack) -> None:
    runs = [stack.invoke("pauser", {}) for _ in range(5)]
    stack.drain()
    body: dict[str, Any] = {"workflow_id": "pauser", "limit": 2}
    matched, pages = 0, 0
    while True:
        answer = bulk(stack, "cancel", body)
        matched, pages = matched + answer["matched"], pages + 1
        if answer["next_cursor"] is None:
            break
        body["cursor"] = answer["next_cursor"]
    assert matched == 5 and pages == 3
    assert {stack.run(run_id)["status"] for run_id in runs} == {"cancelled"}


def test_created_after_and_before_bound_the_runs(stack: Stack) -> None:
    first = stack.invoke("pauser", {})
    second = stack.invoke("pauser", {})
    third = stack.invoke("pauser", {})
    stack.drain()
    after, before = stack.run(first)["created_at"], stack.run(third)["created_at"]
    body = {"workflow_id": "pauser", "created_after": after, "created_before": before}
    assert bulk(stack, "cancel", body)["matched"] == 1
    assert [stack.run(r)["status"] for r in (first, second, third)] == ["waiting", "cancelled", "waiting"]


def test_a_call_short_of_time_stops_with_a_cursor(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "CHUNK", 1)
    runs = [stack.invoke("pauser", {}) for _ in range(3)]
    stack.drain()
    wanted = recovery.RunFilter("pauser")
    first = recovery.bulk("cancel", wanted, "op", time_short=lambda: True)
    assert first.matched == 1 and first.next_cursor is not None
    rest = recovery.bulk("cancel", wanted, "op", first.next_cursor)
    assert rest.matched == 2 and rest.next_cursor is None
    assert {stack.run(run_id)["status"] for run_id in runs} == {"cancelled"}


def test_bad_filters_are_refused_naming_the_field(stack: Stack) -> None:
    cases = [
        ({}, "workflow_id"),
        ({"workflow_id": "pauser", "status": "sleeping"}, "status"),
        ({"workflow_id": "pauser", "created_after": "yesterday"}, "created_after"),
        ({"workflow_id": "pauser", "limit": 10_001}, "limit"),
        ({"workflow_id": "pauser", "cursor": "nonsense"}, "cursor"),
        ({"workflow_id": "pauser", "wat": 1}, "wat"),
    ]
    for body, field in cases:
        answer = stack.request("POST", "/api/v1/runs/cancel", body)
        assert answer.status == 400 and field in answer.body["error"], (body, answer.body)

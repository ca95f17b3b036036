"""Every listing and read stays under Lambda's 6 MB response: a 5 MB byte budget, then the cursor."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.apigw import LambdaContext, http_event, load_function
from polos.api.keys import KeyStore
from polos.aws.responses import RESPONSE_BUDGET_BYTES
from polos.publish.publishing import NewEvent, publish_events
from polos.runtime.journal import Journal, now_iso
from polos.runtime.records import RunRecord, StepRecord

LAMBDA_MAX_RESPONSE = 6 * 1024 * 1024
WORKFLOW = "user-signup-handler"
KB = 1024


def quotes(size: int) -> str:
    """About ``size`` bytes of JSON that escaping grows the most (every ``"`` doubles, then doubles again)."""
    return '"' * (size // 2)


def get(path: str, query: dict[str, str] | None = None) -> tuple[int, Any, int, int]:
    """Status, decoded body, body bytes and Lambda response bytes of one API request."""
    _, key = KeyStore().create("budget")
    request = http_event("GET", path, query=query, api_key=key)
    answer = load_function("api").handler(request, LambdaContext())
    body = answer["body"]
    return answer["statusCode"], json.loads(body), len(body.encode()), len(json.dumps(answer).encode())


def within_limits(body_bytes: int, lambda_bytes: int) -> None:
    assert body_bytes <= RESPONSE_BUDGET_BYTES
    assert lambda_bytes <= LAMBDA_MAX_RESPONSE


def test_event_pages_stop_at_the_budget_and_the_cursor_reads_every_event(stack: dict[str, str]) -> None:
    count = 30
    for i in range(count):
        publish_events("big/topic", [NewEvent(id=None, data={"i": i, "q": quotes(250 * KB)})])
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        status, body, body_bytes, lambda_bytes = get(
            "/api/v1/events", {"topic": "big/topic", "after_sequence_id": str(after)}
        )
        assert status == 200
        within_limits(body_bytes, lambda_bytes)
        pages += 1
        print(
            f"events page {pages}: {len(body['events'])} events, body {body_bytes} B, Lambda {lambda_bytes} B"
        )
        seen += [event["data"]["i"] for event in body["events"]]
        if body["next_after_sequence_id"] is None:
            break
        after = body["next_after_sequence_id"]
    assert seen == list(range(count)) and pages > 1


def stored_run(run_id: str, result: Any = None, steps: int = 0, step_size: int = 0) -> None:
    journal = Journal()
    stamp = now_iso()
    journal.create_queued(
        RunRecord(
            run_id, WORKFLOW, "completed", 1, "invoke", stamp, stamp,
            payload_json="{}", result_json=None if result is None else json.dumps(result),
        )
    )  # fmt: skip
    for index in range(steps):
        journal.record_step(
            run_id,
            StepRecord(
                key=f"s{index}", index=index, status="completed", attempts=1, started_at=stamp,
                finished_at=stamp, result_json=json.dumps({"i": index, "q": quotes(step_size)}),
            ),
        )  # fmt: skip


def test_run_listing_stops_at_the_budget_and_the_cursor_lists_every_run(stack: dict[str, str]) -> None:
    count = 20
    for i in range(count):
        stored_run(f"run_big{i:02d}", result={"q": quotes(300 * KB)})
    seen: list[str] = []
    cursor: str | None = None
    while True:
        status, body, body_bytes, lambda_bytes = get(
            "/api/v1/runs",
            {"workflow_id": WORKFLOW, "limit": "100", **({"cursor": cursor} if cursor else {})},
        )
        assert status == 200, body
        within_limits(body_bytes, lambda_bytes)
        print(f"runs page: {len(body['runs'])} runs, body {body_bytes} B, Lambda {lambda_bytes} B")
        seen += [run["run_id"] for run in body["runs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"run_big{i:02d}" for i in range(count)] and len(seen) == count


def test_a_run_with_many_large_step_results_stays_under_the_budget(stack: dict[str, str]) -> None:
    steps = 40
    stored_run("run_steps", steps=steps, step_size=300 * KB)
    status, body, body_bytes, lambda_bytes = get("/api/v1/runs/run_steps")
    assert status == 200
    within_limits(body_bytes, lambda_bytes)
    listed = body["steps"]
    assert [step["key"] for step in listed] == [f"s{i}" for i in range(steps)]
    full = [step for step in listed if "result_omitted" not in step]
    omitted = [step for step in listed if step.get("result_omitted")]
    assert full and omitted and len(full) + len(omitted) == steps
    assert all(step["result"] is None for step in omitted)
    assert all(step["result"]["i"] == int(step["key"][1:]) for step in full)
    print(f"run: {len(full)} results inline, {len(omitted)} omitted; body {body_bytes} B, {lambda_bytes} B")
    # Each omitted result is one request away, in full.
    key = omitted[-1]["key"]
    status, one, body_bytes, lambda_bytes = get("/api/v1/runs/run_steps", {"step": key})
    assert status == 200
    within_limits(body_bytes, lambda_bytes)
    assert [step["key"] for step in one["steps"]] == [key]
    assert one["steps"][0]["result"] == {"i": int(key[1:]), "q": quotes(300 * KB)}
    status, missing, _, _ = get("/api/v1/runs/run_steps", {"step": "nope"})
    assert status == 404 and missing["error_type"] == "not_found"
    # The execution view of the same run stays small too.
    status, execution, body_bytes, lambda_bytes = get("/api/v1/executions/run_steps")
    assert status == 200 and execution["id"] == "run_steps"
    within_limits(body_bytes, lambda_bytes)


@pytest.mark.parametrize("steps", [0, 3])
def test_small_runs_show_every_result(stack: dict[str, str], steps: int) -> None:
    stored_run("run_small", result={"ok": True}, steps=steps, step_size=100)
    status, body, _, _ = get("/api/v1/runs/run_small")
    assert status == 200 and body["result"] == {"ok": True}
    assert all("result_omitted" not in step and step["result"]["q"] == quotes(100) for step in body["steps"])
    assert "steps_truncated" not in body

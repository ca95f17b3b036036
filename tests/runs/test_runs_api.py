"""The runs API through the real API Gateway path (authorizer + ``functions/api/app.handler``) on moto."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, dlq_url, publish, queue_depth
from polos import NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.runtime.runs import event_run_id

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
RUN_KEYS = [
    "run_id",
    "workflow_id",
    "status",
    "attempts",
    "result",
    "error",
    "created_at",
    "updated_at",
    "trigger",
]


def shout(text: str) -> str:
    return text.upper()


def explode(text: str) -> str:
    raise NonRetryableError(f"cannot take {text!r}")


@workflow(id="ra-steps")
async def steps(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    loud = await ctx.step.run("shout", shout, payload["text"])
    token = await ctx.step.uuid("token")
    if payload.get("explode"):
        await ctx.step.run("explode", explode, payload["text"])
    return {"loud": loud, "token": token}


@workflow(id="ra-event", trigger_on_event="ra/event")
async def on_event(ctx: WorkflowContext, payload: Any) -> int:
    return int(payload.sequence_id)


APP = App("runs-api", [steps, on_event])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision(APP, tmp_path, monkeypatch)


@pytest.fixture
def api(urls: dict[str, str]) -> Api:
    return Api()


@pytest.fixture
def pump(urls: dict[str, str]) -> Pump:
    return Pump(APP, urls)


def start(api: Api, payload: Any, **headers: str) -> dict[str, Any]:
    answer = api("POST", "/api/v1/workflows/ra-steps/run", {"payload": payload}, headers=headers)
    assert answer.status == 202, answer.json
    return dict(answer.json)


def test_invoking_answers_202_with_a_queued_run_that_the_worker_completes(api: Api, pump: Pump) -> None:
    started = start(api, {"text": "hi"})
    assert sorted(started) == ["created_at", "execution_id", "run_id", "workflow_id"]
    assert started["execution_id"] == started["run_id"] and started["workflow_id"] == "ra-steps"
    assert TIMESTAMP.fullmatch(started["created_at"])
    queued = api("GET", f"/api/v1/runs/{started['run_id']}").json
    assert queued == {
        "run_id": started["run_id"],
        "workflow_id": "ra-steps",
        "status": "queued",
        "attempts": 0,
        "result": None,
        "error": None,
        "created_at": started["created_at"],
        "updated_at": started["created_at"],
        "trigger": {"type": "invoke", "event_ids": []},
        "steps": [],
        "attempt_history": [],
    }
    pump.drain()
    run = api("GET", f"/api/v1/runs/{started['run_id']}").json
    assert list(run) == [*RUN_KEYS, "steps", "attempt_history"]
    assert (run["status"], run["attempts"], run["error"]) == ("completed", 1, None)
    assert run["result"]["loud"] == "HI"
    assert [(s["key"], s["status"], s["attempts"]) for s in run["steps"]] == [
        ("shout", "completed", 1),
        ("token", "completed", 1),
    ]
    first = run["steps"][0]
    assert sorted(first) == [
        "attempts",
        "finished_at",
        "key",
        "last_error",
        "next_attempt_at",
        "result",
        "started_at",
        "status",
    ]
    assert first["last_error"] is None and first["next_attempt_at"] is None
    assert first["result"] == "HI" and run["steps"][1]["result"] == run["result"]["token"]
    assert TIMESTAMP.fullmatch(first["started_at"]) and first["started_at"] <= first["finished_at"]
    assert run["created_at"] <= run["updated_at"]


def test_a_failed_step_and_run_show_their_errors(api: Api, pump: Pump, urls: dict[str, str]) -> None:
    started = start(api, {"text": "boom", "explode": True})
    pump.drain()
    run = api("GET", f"/api/v1/runs/{started['run_id']}").json
    assert (run["status"], run["attempts"]) == ("failed", 1)
    assert run["error"] == {"type": "NonRetryableError", "message": "cannot take 'boom'"}
    failed = run["steps"][2]
    assert sorted(failed) == [
        "attempts",
        "error",
        "finished_at",
        "key",
        "last_error",
        "next_attempt_at",
        "started_at",
        "status",
    ]
    assert (failed["key"], failed["status"], failed["attempts"]) == ("explode", "failed", 1)
    assert failed["error"] == {"type": "NonRetryableError", "message": "cannot take 'boom'"}
    assert queue_depth(dlq_url(urls["ra-steps"])) == 0


def test_a_payload_that_does_not_fit_the_handler_fails_the_run_at_once(api: Api, pump: Pump) -> None:
    started = start(api, ["not", "a", "dict"])
    deliveries = pump.drain()
    assert [len(d.failed) for d in deliveries] == [0]
    run = api("GET", f"/api/v1/runs/{started['run_id']}").json
    assert (run["status"], run["attempts"], run["error"]["type"]) == ("failed", 1, "PayloadValidationError")
    assert "ra-steps" in run["error"]["message"] and run["steps"] == []


def test_sdk_fields_and_headers_are_accepted_and_unknown_fields_named(api: Api) -> None:
    body = {
        "payload": {"text": "x"},
        "wait_for_subworkflow": False,
        "deployment_id": "d",
        "session_id": "s",
        "user_id": "u",
        "queue_name": "q",
        "concurrency_key": "c",
        "run_timeout_seconds": 60,
        "initial_state": {},
        "otel_traceparent": "00-abc",
    }
    answer = api("POST", "/api/v1/workflows/ra-steps/run", body, headers={"X-Project-ID": "proj"})
    assert answer.status == 202
    wrong = api("POST", "/api/v1/workflows/ra-steps/run", {"payload": {}, "priority": 1})
    assert (wrong.status, wrong.json) == (
        400,
        {"error": "priority: unknown field", "error_type": "validation_error"},
    )
    assert (
        api(
            "POST", "/api/v1/workflows/ra-steps/run", {"payload": {}}, headers={"Idempotency-Key": "x" * 256}
        ).status
        == 400
    )


def test_unknown_workflows_and_runs_are_404(api: Api) -> None:
    missing = api("POST", "/api/v1/workflows/no-such-flow/run", {"payload": {}})
    assert (missing.status, missing.json["error_type"]) == (404, "not_found")
    assert "no-such-flow" in missing.json["error"]
    for path in (
        "/api/v1/runs/run_doesnotexist",
        "/api/v1/runs/not%20a%20run",
        "/api/v1/executions/run_nope",
    ):
        answer = api("GET", path)
        assert (answer.status, answer.json["error_type"]) == (404, "not_found"), path


def test_a_payload_over_256_kb_is_413_and_stores_nothing(api: Api, urls: dict[str, str]) -> None:
    answer = api("POST", "/api/v1/workflows/ra-steps/run", {"payload": {"text": "x" * (256 * 1024)}})
    assert (answer.status, answer.json["error_type"]) == (413, "payload_too_large")
    assert api("GET", "/api/v1/runs").json == {"runs": [], "next_cursor": None}
    assert queue_depth(urls["ra-steps"]) == 0


def test_idempotency_key_gives_the_same_run_and_a_different_payload_is_409(
    api: Api, pump: Pump, urls: dict[str, str]
) -> None:
    first = start(api, {"text": "a"}, **{"Idempotency-Key": "order-1"})
    again = start(api, {"text": "a"}, **{"Idempotency-Key": "order-1"})
    assert again == first
    # Still queued: the message was sent again (the first request might have stopped before sending it).
    assert queue_depth(urls["ra-steps"]) == 2
    conflict = api(
        "POST",
        "/api/v1/workflows/ra-steps/run",
        {"payload": {"text": "b"}},
        headers={"Idempotency-Key": "order-1"},
    )
    assert (conflict.status, conflict.json["error_type"]) == (409, "idempotency_conflict")
    pump.drain()
    run = api("GET", f"/api/v1/runs/{first['run_id']}").json
    assert (run["status"], run["attempts"]) == ("completed", 1)
    assert start(api, {"text": "a"}, **{"Idempotency-Key": "order-1"}) == first
    assert queue_depth(urls["ra-steps"]) == 0  # finished: nothing is sent again
    other = start(api, {"text": "a"}, **{"Idempotency-Key": "order-2"})
    assert other["run_id"] != first["run_id"]


def test_a_failed_send_stores_no_run(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from polos.runtime import runs

    def broken(messages: Any) -> None:
        raise RuntimeError("SQS is unreachable")

    monkeypatch.setattr(runs, "deliver", broken)
    answer = api("POST", "/api/v1/workflows/ra-steps/run", {"payload": {"text": "a"}})
    assert answer.status == 500
    monkeypatch.undo()
    assert api("GET", "/api/v1/runs").json["runs"] == []


def test_runs_are_listed_newest_first_across_workflows_page_by_page(api: Api, pump: Pump) -> None:
    started = [start(api, {"text": str(n), "explode": n % 3 == 0})["run_id"] for n in range(5)]
    events = publish("ra/event", {}, {}, {})
    pump.drain()
    event_runs = [event_run_id("ra-event", e.topic, e.sequence_id) for e in events]
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api("GET", "/api/v1/runs", query={"limit": 3, "cursor": cursor}).json
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [run for page in pages for run in page["runs"]]
    assert len(pages) == 3 and all(len(page["runs"]) <= 3 for page in pages)
    assert sorted(run["run_id"] for run in listed) == sorted(started + event_runs)
    stamps = [run["created_at"] for run in listed]
    assert stamps == sorted(stamps, reverse=True)
    assert all(list(run) == RUN_KEYS for run in listed)
    by_id = {run["run_id"]: run for run in listed}
    assert by_id[event_runs[0]]["trigger"] == {"type": "event", "event_ids": [events[0].id]}
    assert by_id[event_runs[0]]["result"] == events[0].sequence_id
    failed = api("GET", "/api/v1/runs", query={"workflow_id": "ra-steps", "status": "failed"}).json
    assert sorted(run["run_id"] for run in failed["runs"]) == sorted([started[0], started[3]])
    assert failed["next_cursor"] is None
    only_events = api("GET", "/api/v1/runs", query={"workflow_id": "ra-event", "limit": 2}).json
    # one publish's events: newest (highest sequence id) first
    assert [run["run_id"] for run in only_events["runs"]] == event_runs[::-1][:2]
    rest = api(
        "GET", "/api/v1/runs", query={"workflow_id": "ra-event", "cursor": only_events["next_cursor"]}
    ).json
    assert len(rest["runs"]) == 1 and rest["next_cursor"] is None


def test_bad_listing_parameters_are_400_naming_them(api: Api) -> None:
    for query, field in (
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"status": "sleeping"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"workflow_id": "no/slashes"}, "workflow_id"),
    ):
        answer = api("GET", "/api/v1/runs", query=query)
        assert (answer.status, answer.json["error_type"]) == (400, "validation_error"), query
        assert field in answer.json["error"], answer.json


def test_executions_show_a_run_in_the_polos_sdk_shape(api: Api, pump: Pump) -> None:
    started = start(api, {"text": "hi"})
    [event] = publish("ra/event", {"k": 1})
    pump.drain()
    execution = api("GET", f"/api/v1/executions/{started['run_id']}").json
    assert list(execution) == [
        "id",
        "workflow_id",
        "status",
        "payload",
        "result",
        "error",
        "created_at",
        "completed_at",
        "retry_count",
    ]
    assert (execution["id"], execution["status"], execution["payload"]) == (
        started["run_id"],
        "completed",
        {"text": "hi"},
    )
    assert execution["retry_count"] == 0 and TIMESTAMP.fullmatch(execution["completed_at"])
    of_event = api(
        "GET", f"/api/v1/executions/{event_run_id('ra-event', event.topic, event.sequence_id)}"
    ).json
    assert of_event["payload"] == event.model_dump(mode="json")


def test_requests_without_a_valid_key_are_401(urls: dict[str, str]) -> None:
    from helpers.apigw import gateway_call, http_event

    answer = gateway_call(http_event("GET", "/api/v1/runs", api_key="pk_wrong"))
    assert (answer.status, answer.json["error_type"]) == (401, "unauthorized")

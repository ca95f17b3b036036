"""A run's ``attempt_history`` (DESIGN §2): each execution's times and outcome, a failed one's traceback
(at most 8 KB), on ``GET /api/v1/runs/{id}`` only; kept without growing any item with the run's age."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, count_requests
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import attempts
from polos.runtime.journal import Journal

MAX_ATTEMPTS = 3
calls: Counter[str] = Counter()


def _flaky(key: str) -> str:
    calls[key] += 1
    if calls[key] < 3:
        raise ConnectionError(f"card network timed out (call {calls[key]})")
    return "charged"


def _deep(n: int) -> None:
    if n == 0:
        raise RuntimeError("bottom of a deep stack " + "x" * 12000)
    _deeper(n - 1)  # two functions in turn: Python does not fold their frames into "repeated N times"


def _deeper(n: int) -> None:
    _deep(n)


@workflow(id="ah-flaky")
async def flaky(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return _flaky(payload["key"])  # outside a step: each failure ends the execution (SQS delivers again)


@workflow(id="ah-deep")
async def deep(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    _deep(300)


seen_while_running: list[Any] = []


@workflow(id="ah-look")
async def look(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    from polos.runtime import runs

    seen_while_running.append(runs.get_run(ctx.run_id))


APP = App("attempt-history", [flaky, deep, look])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(MAX_ATTEMPTS))
    calls.clear()
    return provision(APP, tmp_path, monkeypatch, max_attempts=MAX_ATTEMPTS)


def _start(api: Api, workflow_id: str, payload: dict[str, Any]) -> str:
    answer = api("POST", f"/api/v1/workflows/{workflow_id}/run", {"payload": payload})
    assert answer.status == 202, answer.json
    return str(answer.json["run_id"])


def test_each_execution_is_listed_with_its_outcome_and_a_failed_one_with_its_traceback(
    urls: dict[str, str],
) -> None:
    api = Api()
    run_id = _start(api, "ah-flaky", {"key": "a"})
    Pump(APP, urls).drain()
    run = api("GET", f"/api/v1/runs/{run_id}").json
    assert (run["status"], run["attempts"]) == ("completed", 3)
    history = run["attempt_history"]
    assert [(a["attempt"], a["outcome"]) for a in history] == [
        (1, "retried"),
        (2, "retried"),
        (3, "completed"),
    ]
    for entry in history:
        assert entry["started_at"] <= entry["finished_at"]
    assert history[0]["started_at"] < history[1]["started_at"] < history[2]["started_at"]
    first = history[0]["error"]
    assert (first["type"], first["message"]) == ("ConnectionError", "card network timed out (call 1)")
    assert "in _flaky" in first["traceback"] and first["traceback"].rstrip().endswith("(call 1)")
    assert "(call 2)" in history[1]["error"]["traceback"] and "error" not in history[2]

    listed = api("GET", "/api/v1/runs", query={"workflow_id": "ah-flaky"}).json["runs"]
    assert [r["run_id"] for r in listed] == [run_id] and "attempt_history" not in listed[0]


def test_a_traceback_is_cut_to_8_kb_keeping_the_innermost_frames(urls: dict[str, str]) -> None:
    api = Api()
    run_id = _start(api, "ah-deep", {})
    Pump(APP, urls).drain()
    run = api("GET", f"/api/v1/runs/{run_id}").json
    assert run["status"] == "failed"
    errors = [a["error"] for a in run["attempt_history"]]
    assert [a["outcome"] for a in run["attempt_history"]] == ["retried", "retried", "failed"]
    for error in errors:
        size = len(error["traceback"].encode())
        assert attempts.MAX_TRACEBACK_BYTES - 64 < size <= attempts.MAX_TRACEBACK_BYTES
        assert (
            error["traceback"].startswith("… (")
            and "RuntimeError: bottom of a deep stack" in error["traceback"]
        )
        assert "in _deep" in error["traceback"] and "in deep" not in error["traceback"]  # innermost kept
        assert len(error["message"]) <= attempts.MAX_SUMMARY_MESSAGE + 1


def test_the_run_item_keeps_the_last_executions_only_and_an_ending_costs_no_extra_request(
    urls: dict[str, str],
) -> None:
    """Many executions (a run woken again and again) keep at most ``KEPT`` summaries in the run item; a
    completed execution's summary is written by the UpdateItem that ends it."""
    api = Api()
    run_id = _start(api, "ah-flaky", {"key": "b"})
    calls["b"] = 2  # the next call succeeds
    with count_requests() as requests:
        Pump(APP, urls).drain()
    assert requests.calls.get("PutItem", 0) == 0  # no traceback: nothing failed
    journal = Journal()
    from polos.runtime.journal import RUN_SK, run_pk

    item = settings.dynamodb().get_item(
        TableName=journal.table, Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}}
    )["Item"]
    # The first execution ended the run: only its duration is kept (issue 26), not a summary.
    assert [name for name in item if name.startswith(attempts.SUMMARY_PREFIX)] == []
    assert attempts.DURATION_ATTRIBUTE in item
    # Fifteen more summaries written as the executor writes them: the slots stay at KEPT.
    record = journal.load(run_id)
    assert record is not None
    for number in range(2, 17):
        record.run.attempts = number
        entry = attempts.summary(record.run, "waiting", None, False, record.run.updated_at)
        settings.dynamodb().update_item(
            TableName=journal.table,
            Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            UpdateExpression="SET #a = :a, attempts = :n",
            ExpressionAttributeNames={"#a": entry.attribute},
            ExpressionAttributeValues={":a": {"S": entry.to_json()}, ":n": {"N": str(number)}},
        )
    history = api("GET", f"/api/v1/runs/{run_id}").json["attempt_history"]
    assert [a["attempt"] for a in history] == list(range(7, 17))


def test_a_running_execution_is_shown_running(urls: dict[str, str]) -> None:
    seen_while_running.clear()
    run_id = _start(Api(), "ah-look", {})
    Pump(APP, urls).drain()
    [view] = seen_while_running
    assert view["status"] == "running"
    assert [(a["attempt"], a["outcome"], a["finished_at"]) for a in view["attempt_history"]] == [
        (1, "running", None)
    ]
    assert Api()("GET", f"/api/v1/runs/{run_id}").json["attempt_history"][0]["outcome"] == "completed"

"""``GET /api/v1/workflows`` (every workflow of the app, its trigger, batch, options and dead letters) and
the runs listing's filters the dashboard builds on (workflow id prefix, time range)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, dlq_url
from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.payloads import BatchEventPayload, SchedulePayload


@workflow(id="trial-signup", trigger_on_event="wa/signup")
async def signup(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


@workflow(id="trial-batch", trigger_on_event="wa/clicks", batch_size=20, batch_timeout_seconds=5)
async def clicks(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    return None


@workflow(id="report", schedule={"cron": "0 3 * * *", "timezone": "Europe/Paris"})
async def report(ctx: WorkflowContext, payload: SchedulePayload) -> None:
    return None


@workflow(id="charge", max_attempts=2)
async def charge(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    return None


# Options another branch adds to @workflow (CONTRACTS.md): the listing shows whatever attribute is set.
charge.debounce = {"period_seconds": 30, "key": "user_id"}  # type: ignore[attr-defined]

APP = App("workflows-api", [signup, clicks, report, charge])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision(APP, tmp_path, monkeypatch)


def _ids(answer: Any) -> list[str]:
    return [wf["id"] for wf in answer.json["workflows"]]


def test_every_workflow_with_its_trigger_batch_options_and_dead_letters(urls: dict[str, str]) -> None:
    settings.sqs().send_message(QueueUrl=dlq_url(urls["charge"]), MessageBody="{}")
    answer = Api()("GET", "/api/v1/workflows")
    assert answer.status == 200, answer.json
    assert answer.json["next_cursor"] is None
    shown = {wf["id"]: wf for wf in answer.json["workflows"]}
    assert list(shown) == ["charge", "report", "trial-batch", "trial-signup"]
    assert shown["trial-signup"] == {
        "id": "trial-signup",
        "trigger": {"type": "event", "topic": "wa/signup"},
        "batch": None,
        "options": {},
        "dead_letters": 0,
    }
    assert shown["trial-batch"]["batch"] == {"size": 20, "window_seconds": 5}
    assert shown["report"]["trigger"] == {"type": "schedule", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    assert shown["charge"]["trigger"] == {"type": "invoke"}
    assert shown["charge"]["options"] == {
        "debounce": {"period_seconds": 30, "key": "user_id"},
        "max_attempts": 2,
    }
    assert shown["charge"]["dead_letters"] == 1


def test_prefix_trigger_and_topic_narrow_the_list_and_pages_continue(urls: dict[str, str]) -> None:
    api = Api()
    assert _ids(api("GET", "/api/v1/workflows", query={"prefix": "trial"})) == ["trial-batch", "trial-signup"]
    assert _ids(api("GET", "/api/v1/workflows", query={"trigger": "schedule"})) == ["report"]
    assert _ids(api("GET", "/api/v1/workflows", query={"trigger": "invoke"})) == ["charge"]
    assert _ids(api("GET", "/api/v1/workflows", query={"topic": "wa/clicks"})) == ["trial-batch"]
    first = api("GET", "/api/v1/workflows", query={"limit": 3})
    assert _ids(first) == ["charge", "report", "trial-batch"] and first.json["next_cursor"] == "trial-batch"
    rest = api("GET", "/api/v1/workflows", query={"limit": 3, "cursor": "trial-batch"})
    assert _ids(rest) == ["trial-signup"] and rest.json["next_cursor"] is None
    bad = api("GET", "/api/v1/workflows", query={"trigger": "cron"})
    assert bad.status == 400 and "trigger" in bad.json["error"]


def test_runs_listed_by_workflow_prefix_and_time_range(urls: dict[str, str]) -> None:
    api = Api()
    started = [
        api("POST", f"/api/v1/workflows/{wf}/run", {"payload": {}}).json for wf in ("charge", "charge")
    ]
    Pump(APP, urls).drain()
    listed = api("GET", "/api/v1/runs", query={"workflow_prefix": "cha"}).json["runs"]
    assert [r["run_id"] for r in listed] == [s["run_id"] for s in reversed(started)]
    assert api("GET", "/api/v1/runs", query={"workflow_prefix": "trial"}).json["runs"] == []
    first, second = (s["created_at"] for s in started)
    only_second = api("GET", "/api/v1/runs", query={"created_after": second}).json["runs"]
    assert [r["run_id"] for r in only_second] == [started[1]["run_id"]]
    only_first = api("GET", "/api/v1/runs", query={"created_before": first}).json["runs"]
    assert [r["run_id"] for r in only_first] == [started[0]["run_id"]]
    both = api("GET", "/api/v1/runs", query={"created_after": first, "created_before": second, "limit": 1})
    assert [r["run_id"] for r in both.json["runs"]] == [started[1]["run_id"]]
    rest = api("GET", "/api/v1/runs", query={"created_after": first, "cursor": both.json["next_cursor"]})
    assert [r["run_id"] for r in rest.json["runs"]] == [started[0]["run_id"]]
    bad = api("GET", "/api/v1/runs", query={"created_after": "yesterday"})
    assert bad.status == 400 and bad.json["error"].startswith("created_after:")

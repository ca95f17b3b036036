"""The user documentation's examples end to end in one process: publish → fan-out → worker → runs API.

``PolosClient`` talks to the real API handlers (through the authorizer); the worker handler
(``functions/worker/app.handler``) consumes the workflow queues on moto like the event source mappings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers.inprocess import Api, InProcessClient
from helpers.worker import Pump, example_invoke
from polos.app import App
from polos.runtime.runs import event_run_id

from infra.cli import runs as runs_cli
from infra.cli.main import main


@pytest.fixture
def client(stack: dict[str, str], example_app: App) -> InProcessClient:
    return InProcessClient(Pump(example_app, stack, example_invoke()))


def runs_of(api: Api, workflow_id: str) -> list[dict[str, Any]]:
    answer = api("GET", "/api/v1/runs", query={"workflow_id": workflow_id, "limit": 100})
    assert answer.status == 200 and answer.json["next_cursor"] is None
    return list(answer.json["runs"])


def test_create_user_runs_and_its_published_event_triggers_the_signup_handler(
    client: InProcessClient, example_app: App
) -> None:
    from workflows.effects import CreateUserInput
    from workflows.users import create_user

    result = asyncio.run(
        create_user.run(client, CreateUserInput(email="ada@example.com", name="Ada"), timeout=30)
    )
    user_id = result["user_id"]
    assert user_id.startswith("user_")
    [run] = runs_of(client.api, "create_user")
    assert (run["status"], run["attempts"], run["trigger"]) == (
        "completed",
        1,
        {"type": "invoke", "event_ids": []},
    )
    detail = asyncio.run(client.get_run(run["run_id"]))
    assert [(s["key"], s["status"]) for s in detail["steps"]] == [
        ("create", "completed"),
        ("publish_signup", "completed"),
    ]
    published = detail["steps"][1]["result"]
    assert (published["topic"], published["event_type"]) == ("user/signup", "user_created")
    [signup] = runs_of(client.api, "user-signup-handler")
    assert signup["run_id"] == event_run_id("user-signup-handler", "user/signup", published["sequence_id"])
    assert signup["trigger"] == {"type": "event", "event_ids": [published["id"]]}
    assert (signup["status"], signup["result"]) == ("completed", {"status": "onboarded", "user_id": user_id})
    handle = asyncio.run(create_user.invoke(client, {"email": "bob@example.com", "name": "Bob"}))
    assert asyncio.run(handle.result(timeout=30))["user_id"] != user_id
    assert len(runs_of(client.api, "user-signup-handler")) == 2


def test_every_example_topic_runs_its_workflows(client: InProcessClient) -> None:
    async def publish_all() -> None:
        await client.publish("notifications/new", [{"data": {"user_id": "u1", "message": "hi"}}])
        await client.publish(
            "notifications.system",
            [
                {"data": {"level": 1}, "event_type": "high_priority"},
                {"data": {"level": 2}, "event_type": "low"},
            ],
        )
        await client.publish("order.created", [{"data": {"order_id": f"ord_{n}"}} for n in range(3)])
        await client.publish("analytics/events", [{"data": {"action": "click", "n": n}} for n in range(12)])

    asyncio.run(publish_all())
    client.pump.drain()
    api = client.api
    assert [r["status"] for r in runs_of(api, "notification-handler")] == ["completed"]
    priority = runs_of(api, "high-priority-handler")
    assert [r["status"] for r in priority] == ["completed", "completed"]
    steps = sorted(len(asyncio.run(client.get_run(r["run_id"]))["steps"]) for r in priority)
    assert steps == [0, 1]  # only the high_priority event sends an alert
    immediate = runs_of(api, "immediate-handler")
    assert sorted(r["result"]["handler"] for r in immediate) == ["immediate"] * 3
    [batched] = runs_of(api, "batched-handler")
    assert (
        batched["result"] == {"handler": "batched", "count": 3} and len(batched["trigger"]["event_ids"]) == 3
    )
    batches = runs_of(api, "batch-processor")
    assert sorted(r["result"]["processed"] for r in batches) == [2, 10]
    assert all(r["trigger"]["type"] == "batch" for r in batches)


def test_the_cli_prints_runs_and_a_run_as_tables(
    client: InProcessClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(client.publish("user/signup", [{"data": {"user_id": "u9", "email": "u9@example.com"}}]))
    client.pump.drain()
    monkeypatch.setattr(runs_cli, "PolosClient", lambda: client)
    capsys.readouterr()  # the worker's metrics (EMF lines on stdout) so far
    assert main(["runs", "--workflow", "user-signup-handler", "--status", "completed"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == [
        "RUN",
        "WORKFLOW",
        "STATUS",
        "ATTEMPTS",
        "TRIGGER",
        "CREATED",
        "RESULT",
        "/",
        "ERROR",
    ]
    assert set(listing[1]) <= {"-", " "}
    [row] = listing[2:]
    run_id = row.split()[0]
    assert row.split()[1:5] == ["user-signup-handler", "completed", "1", "event"]
    assert main(["run", run_id]) == 0
    shown = capsys.readouterr().out
    assert f"run       {run_id}" in shown and "status    completed" in shown
    assert "send_welcome" in shown and "setup_account" in shown
    assert main(["run", "run_missing"]) == 1
    assert "does not exist (404 not_found)" in capsys.readouterr().err
    assert main(["runs", "--status", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"

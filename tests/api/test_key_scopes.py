"""Least privilege for API keys: every route of the API with a key of every scope (DESIGN §2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.apigw import LambdaContext, http_event, load_function
from helpers.aws_calls import count_calls
from polos.api.app import app
from polos.api.keys import ADMIN, PUBLISH, READ, SCOPES, KeyStore
from polos.aws import settings

from infra.cli.main import main

ANY = "any"  # any valid key
PUBLIC = "public"  # no key at all (the dashboard's files)
# Every route, the scope it needs and a request to it (path parameters filled in, a body that is valid).
ROUTES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("POST", "/api/v1/events/publish"): (PUBLISH, "/api/v1/events/publish", {"topic": "t", "events": []}),
    ("GET", "/api/v1/events"): (READ, "/api/v1/events?topic=t", None),
    ("GET", "/api/v1/runs"): (READ, "/api/v1/runs", None),
    ("GET", "/api/v1/runs/<run_id>"): (READ, "/api/v1/runs/run_missing", None),
    ("GET", "/api/v1/executions/<execution_id>"): (READ, "/api/v1/executions/run_missing", None),
    ("GET", "/api/v1/queues/<name>"): (READ, "/api/v1/queues/no-such-queue", None),
    ("GET", "/api/v1/keys/me"): (ANY, "/api/v1/keys/me", None),
    ("POST", "/api/v1/workflows/<workflow_id>/run"): (ADMIN, "/api/v1/workflows/nope/run", {"payload": {}}),
    ("POST", "/api/v1/runs/<run_id>/cancel"): (ADMIN, "/api/v1/runs/run_missing/cancel", None),
    ("POST", "/api/v1/executions/<execution_id>/cancel"): (ADMIN, "/api/v1/executions/run_x/cancel", None),
    ("POST", "/api/v1/runs/<run_id>/resume"): (
        ADMIN,
        "/api/v1/runs/run_missing/resume",
        {"step_key": "s", "data": {}},
    ),
    ("POST", "/api/v1/runs/<run_id>/rerun"): (ADMIN, "/api/v1/runs/run_missing/rerun", {}),
    ("POST", "/api/v1/runs/cancel"): (ADMIN, "/api/v1/runs/cancel", {"workflow_id": "create_user"}),
    ("POST", "/api/v1/runs/rerun"): (ADMIN, "/api/v1/runs/rerun", {"workflow_id": "create_user"}),
    ("GET", "/api/v1/workflows"): (READ, "/api/v1/workflows", None),
    ("GET", "/api/v1/workflows/<workflow_id>/dead-letters"): (
        ADMIN,
        "/api/v1/workflows/create_user/dead-letters",
        None,
    ),
    ("POST", "/api/v1/workflows/<workflow_id>/dead-letters/redrive"): (
        ADMIN,
        "/api/v1/workflows/create_user/dead-letters/redrive",
        None,
    ),
    ("POST", "/api/v1/schedules"): (
        ADMIN,
        "/api/v1/schedules",
        {"workflow_id": "create_user", "cron": "* * * * *"},
    ),
    ("GET", "/api/v1/schedules"): (READ, "/api/v1/schedules", None),
    ("DELETE", "/api/v1/schedules/<schedule_id>"): (ADMIN, "/api/v1/schedules/s_missing", None),
    ("GET", "/ui"): (PUBLIC, "/ui", None),
    ("GET", "/ui/<asset>"): (PUBLIC, "/ui/app.js", None),
}


def send(method: str, target: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    """The API function's status and body (JSON decoded when it is JSON) for one request."""
    path, _, query = target.partition("?")
    params = dict(part.split("=") for part in query.split("&")) if query else None
    answer = load_function("api").handler(
        http_event(method, path, body=body, query=params, api_key=key), LambdaContext()
    )
    is_json = answer["headers"].get("Content-Type", "").startswith("application/json")
    return answer["statusCode"], json.loads(answer["body"]) if is_json else answer["body"]


def test_the_table_names_every_route_of_the_api() -> None:
    routes = {(route.method, route.path) for route in app._static_routes + app._dynamic_routes}
    assert routes == set(ROUTES)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("route", list(ROUTES), ids=[f"{method} {path}" for method, path in ROUTES])
def test_every_route_with_every_scope(stack: dict[str, str], route: tuple[str, str], scope: str) -> None:
    needed, target, body = ROUTES[route]
    _, key = KeyStore().create("scoped", scope=scope)
    with count_calls() as calls:
        status, answer = send(route[0], target, key, body)
    allowed = needed in (ANY, PUBLIC, scope) or scope == ADMIN
    if allowed:
        assert status != 403, answer
        return
    assert status == 403, answer
    assert answer == {
        "error": f"{route[0]} {target.partition('?')[0]} needs an API key with scope {needed!r}; "
        f"this key's scope is {scope!r}",
        "error_type": "forbidden",
    }
    assert calls == {"dynamodb": 1, "dynamodb.GetItem": 1}, "a refused request reads its key, nothing else"


@pytest.mark.parametrize("scope", SCOPES)
def test_publishing_to_a_workflow_topic_resumes_runs_and_needs_admin(
    stack: dict[str, str], scope: str
) -> None:
    _, key = KeyStore().create("scoped", scope=scope)
    body = {"topic": "workflow.w.run_1", "events": [{"event_type": "resume_s", "data": {}}]}
    status, answer = send("POST", "/api/v1/events/publish", key, body)
    if scope == ADMIN:
        assert status == 200, answer
    else:  # a publish key is told it needs admin; a read key may not publish at all
        needed = ADMIN if scope == PUBLISH else PUBLISH
        assert (status, answer["error_type"]) == (403, "forbidden"), answer
        assert f"needs an API key with scope {needed!r}" in answer["error"]
        assert (
            send("GET", "/api/v1/events?topic=workflow/w/run_1", KeyStore().create("a")[1])[1]["events"] == []
        )


def test_keys_me_answers_the_calling_keys_scope_and_old_keys_are_admin(stack: dict[str, str]) -> None:
    for scope in SCOPES:
        record, key = KeyStore().create(f"k-{scope}", scope=scope)
        status, answer = send("GET", "/api/v1/keys/me", key)
        assert (status, answer["scope"], answer["key_id"]) == (200, scope, record.key_id)
    record, key = KeyStore().create("before scopes")
    client = settings.dynamodb()
    table = settings.get_settings().keys_table
    client.update_item(
        TableName=table,
        Key={"pk": {"S": record.key_id}},
        UpdateExpression="REMOVE #s",
        ExpressionAttributeNames={"#s": "scope"},
    )
    assert send("GET", "/api/v1/keys/me", key)[1]["scope"] == ADMIN
    assert send("POST", "/api/v1/runs/run_missing/cancel", key)[0] == 404
    with pytest.raises(ValueError, match="key scope must be one of publish, read, admin; got 'write'"):
        KeyStore().create("bad", scope="write")


def test_polos_keys_create_takes_a_scope(stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--name", "ingest", "--scope", "publish"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert send("GET", "/api/v1/keys/me", key)[1]["scope"] == PUBLISH
    assert main(["keys", "create", "--name", "ops"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert send("GET", "/api/v1/keys/me", key)[1]["scope"] == ADMIN
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "SCOPE" in listing and "publish" in listing

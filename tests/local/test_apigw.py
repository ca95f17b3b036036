"""API Gateway emulation: payload 2.0 events, the authorizer step and responses (fake functions)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.local.apigw import (
    ApiGateway,
    HttpRequest,
    RouteTable,
    authorizer_event,
    request_event,
    response_of,
)
from infra.model import ROUTES

NOW = datetime(2025, 1, 28, 10, 30, tzinfo=UTC)


def event_of(request: HttpRequest) -> dict[str, Any]:
    route, params = RouteTable(ROUTES).match(request.method, request.target.split("?")[0])
    return request_event(request, route, params, request_id="req-1", now=NOW)


def test_http_api_v2_event() -> None:
    request = HttpRequest(
        "POST",
        "/api/v1/workflows/create_user/run?a=1&a=2&b=&c=x%20y",
        [
            ("Host", "127.0.0.1:3000"),
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "s=1; t=2"),
            ("User-Agent", "curl/8"),
        ],
        b'{"payload": {}}',
        source_ip="10.0.0.7",
    )
    event = event_of(request)
    assert event["version"] == "2.0"
    assert (
        event["routeKey"] == event["requestContext"]["routeKey"] == "POST /api/v1/workflows/{workflow_id}/run"
    )
    assert event["rawPath"] == "/api/v1/workflows/create_user/run"
    assert event["rawQueryString"] == "a=1&a=2&b=&c=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "", "c": "x y"}
    assert event["pathParameters"] == {"workflow_id": "create_user"}
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-multi"] == "one,two"
    assert "cookie" not in event["headers"] and event["cookies"] == ["s=1", "t=2"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"payload": {}}', False)
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/api/v1/workflows/create_user/run",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "curl/8",
    }
    assert context["requestId"] == "req-1" and context["stage"] == "$default"
    assert context["timeEpoch"] == int(NOW.timestamp() * 1000)
    assert context["time"] == "28/Jan/2025:10:30:00 +0000"
    assert context["domainName"] == "127.0.0.1:3000"


def test_get_without_query_or_body_omits_them() -> None:
    event = event_of(HttpRequest("GET", "/api/v1/runs/run_1", [("Authorization", "Bearer k")]))
    assert "body" not in event and "queryStringParameters" not in event and "cookies" not in event
    assert event["pathParameters"] == {"run_id": "run_1"}
    assert event["routeKey"] == "GET /api/v1/runs/{run_id}"


def test_binary_body_is_base64() -> None:
    event = event_of(HttpRequest("POST", "/x", [("Content-Type", "application/octet-stream")], b"\xff\x00"))
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00"
    assert event["routeKey"] == "$default" and "pathParameters" not in event


def test_invalid_utf8_json_is_base64_too() -> None:
    event = event_of(
        HttpRequest("POST", "/api/v1/events/publish", [("Content-Type", "application/json")], b"\xff")
    )
    assert event["isBase64Encoded"] is True


def test_route_table_methods_and_default() -> None:
    routes = RouteTable(ROUTES)
    assert routes.match("GET", "/api/v1/events") == ("GET /api/v1/events", {})
    assert routes.match("DELETE", "/api/v1/events") == ("$default", {})  # path known, method not
    assert routes.match("GET", "/api/v1/runs/a%2Fb") == ("GET /api/v1/runs/{run_id}", {"run_id": "a/b"})
    assert routes.match("GET", "/api/v1/runs/a/b") == ("$default", {})


def test_authorizer_event() -> None:
    event = event_of(HttpRequest("GET", "/api/v1/runs?limit=1", [("Authorization", "Bearer k")]))
    auth = authorizer_event(event, "Bearer k")
    assert auth["type"] == "REQUEST" and auth["version"] == "2.0"
    assert auth["identitySource"] == ["Bearer k"]
    assert auth["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:local/$default/GET/api/v1/runs"
    assert auth["headers"] == event["headers"] and auth["requestContext"] == event["requestContext"]
    assert auth["queryStringParameters"] == {"limit": "1"}


def test_responses() -> None:
    answer = response_of(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json"},
            "cookies": ["a=1", "b=2"],
            "body": base64.b64encode(b'{"ok": true}').decode(),
            "isBase64Encoded": True,
        }
    )
    assert answer.status == 201 and answer.json() == {"ok": True}
    assert ("content-type", "application/json") in answer.headers
    assert [v for k, v in answer.headers if k == "set-cookie"] == ["a=1", "b=2"]
    inferred = response_of({"hello": "world"})  # no statusCode: 200 with the result as JSON
    assert (inferred.status, inferred.json()) == (200, {"hello": "world"})


class Functions:
    """A fake authorizer and API function recording their events."""

    def __init__(self, decision: Any = None, fail: str | None = None) -> None:
        self.decision = decision if decision is not None else {"isAuthorized": True, "context": {"who": "k1"}}
        self.fail = fail
        self.authorizer_events: list[dict[str, Any]] = []
        self.api_events: list[dict[str, Any]] = []

    def authorizer(self, event: dict[str, Any], request_id: str) -> Any:
        self.authorizer_events.append(event)
        if self.fail == "authorizer":
            raise RuntimeError("authorizer down")
        return self.decision

    def api(self, event: dict[str, Any], request_id: str) -> Any:
        self.api_events.append(event)
        if self.fail == "api":
            raise RuntimeError("api down")
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"n": 1}),
        }


def gateway(functions: Functions, cache_seconds: float = 0, clock: Any = None) -> ApiGateway:
    extra = {"clock": clock} if clock is not None else {}
    return ApiGateway(
        ROUTES, authorizer=functions.authorizer, api=functions.api, cache_seconds=cache_seconds, **extra
    )


def get(key: str | None = "Bearer k") -> HttpRequest:
    return HttpRequest("GET", "/api/v1/runs", [("Authorization", key)] if key is not None else [])


def test_authorizer_context_reaches_the_api() -> None:
    functions = Functions()
    answer = gateway(functions).handle(get())
    assert answer.status == 200 and answer.json() == {"n": 1}
    assert functions.api_events[0]["requestContext"]["authorizer"] == {"lambda": {"who": "k1"}}
    assert ("apigw-requestid", functions.api_events[0]["requestContext"]["requestId"]) in answer.headers


def test_missing_identity_source_is_refused_before_the_authorizer() -> None:
    functions = Functions()
    answer = gateway(functions).handle(get(key=None))
    assert (answer.status, answer.json()) == (401, {"message": "Unauthorized"})
    assert functions.authorizer_events == [] and functions.api_events == []


@pytest.mark.parametrize(
    ("functions", "status", "message"),
    [
        (Functions(decision={"isAuthorized": False}), 403, "Forbidden"),
        (Functions(decision={"allow": True}), 500, "Internal Server Error"),
        (Functions(fail="authorizer"), 500, "Internal Server Error"),
        (Functions(fail="api"), 500, "Internal Server Error"),
    ],
)
def test_gateway_errors(functions: Functions, status: int, message: str) -> None:
    answer = gateway(functions).handle(get())
    assert (answer.status, answer.json()) == (status, {"message": message})
    if status == 403:
        assert functions.api_events == []


def test_authorizer_results_are_cached_per_identity() -> None:
    functions = Functions()
    now = [0.0]
    gw = gateway(functions, cache_seconds=300, clock=lambda: now[0])
    for key in ("Bearer a", "Bearer a", "Bearer b", "Bearer a"):
        assert gw.handle(get(key)).status == 200
    assert [e["identitySource"] for e in functions.authorizer_events] == [["Bearer a"], ["Bearer b"]]
    now[0] = 301
    gw.handle(get("Bearer a"))
    assert len(functions.authorizer_events) == 3


def test_public_routes_skip_the_authorizer() -> None:
    """The dashboard's files (public routes) reach the API without a key; a key route still needs one."""
    functions = Functions()
    gw = gateway(functions)
    for path in ("/ui", "/ui/app.js"):
        answer = gw.handle(HttpRequest("GET", path))
        assert answer.status == 200, path
    assert functions.authorizer_events == []
    assert [event["routeKey"] for event in functions.api_events] == ["GET /ui", "GET /ui/{asset}"]
    assert all("authorizer" not in event["requestContext"] for event in functions.api_events)
    assert gw.handle(HttpRequest("GET", "/ui/x/y")).status == 401  # not a dashboard route: $default
    assert gw.handle(HttpRequest("POST", "/ui")).status == 401

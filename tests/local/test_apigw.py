"""API Gateway emulation: payload 2.0 events, routing to the API function and responses (fake functions)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from infra.local.apigw import (
    ApiGateway,
    HttpRequest,
    RouteTable,
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
    """A fake API function recording its events."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.api_events: list[dict[str, Any]] = []

    def api(self, event: dict[str, Any], request_id: str) -> Any:
        self.api_events.append(event)
        if self.fail:
            raise RuntimeError("api down")
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"n": 1}),
        }


def get(key: str | None = "Bearer k") -> HttpRequest:
    return HttpRequest("GET", "/api/v1/runs", [("Authorization", key)] if key is not None else [])


def test_every_request_reaches_the_api_function_which_checks_keys() -> None:
    """No authorizer and no cache in front: a missing header and a repeated key reach the function."""
    functions = Functions()
    gateway = ApiGateway(ROUTES, api=functions.api)
    for request in (get(), get(), get(key=None)):
        answer = gateway.handle(request)
        assert answer.status == 200 and answer.json() == {"n": 1}
    assert [event["headers"].get("authorization") for event in functions.api_events] == [
        "Bearer k",
        "Bearer k",
        None,
    ]
    assert ("apigw-requestid", functions.api_events[-1]["requestContext"]["requestId"]) in answer.headers
    assert "authorizer" not in functions.api_events[0]["requestContext"]


def test_a_failing_function_is_api_gateways_500() -> None:
    answer = ApiGateway(ROUTES, api=Functions(fail=True).api).handle(get())
    assert (answer.status, answer.json()) == (500, {"message": "Internal Server Error"})

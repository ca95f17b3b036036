"""The dashboard's static files: served by the API function without a key, nothing else is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.apigw import LambdaContext, gateway_call, http_event, load_function
from polos.api import dashboard


def raw(path: str, method: str = "GET") -> dict[str, Any]:
    """The API function's answer to a request with no key and no authorizer context (a public route)."""
    answer: dict[str, Any] = load_function("api").handler(http_event(method, path), LambdaContext())
    return answer


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/ui", "text/html", '<script src="/ui/app.js"'),
        ("/ui/app.js", "text/javascript", "sessionStorage"),
        ("/ui/style.css", "text/css", ":focus-visible"),
    ],
)
def test_files_are_served_without_a_key(
    stack: dict[str, str], path: str, content_type: str, marker: str
) -> None:
    answer = raw(path)
    assert answer["statusCode"] == 200
    headers = answer["headers"]
    assert headers["Content-Type"].startswith(content_type)
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert marker in answer["body"]


def test_only_the_listed_files_and_only_get(stack: dict[str, str]) -> None:
    missing = raw("/ui/secrets.json")
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error_type"] == "not_found"
    for path, method in (("/ui", "POST"), ("/uix", "GET"), ("/api/v1/runs", "GET")):
        answer = gateway_call(http_event(method, path))
        assert (answer.status, answer.json["error_type"]) == (401, "unauthorized"), (method, path)


def test_is_public() -> None:
    assert dashboard.is_public("GET", "/ui") and dashboard.is_public("GET", "/ui/app.js")
    assert not dashboard.is_public("GET", "/ui-data") and not dashboard.is_public("HEAD", "/ui")
    assert not dashboard.is_public(None, None)

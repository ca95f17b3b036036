"""API Gateway HTTP API (payload 2.0) events for calling the real Lambda handlers in tests.

``gateway_call`` does what API Gateway does: calls the API handler (which checks the API key itself) and
decodes the answer.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "polos-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:polos-test"
    aws_request_id: str = "req-0001"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@cache
def load_function(name: str) -> ModuleType:
    """``functions/<name>/app.py`` as a module (the Lambda handler ``app.handler``)."""
    path = FUNCTIONS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"polos_function_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    api_key: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An HTTP API request event; ``body`` is JSON-encoded, ``raw_body`` sent as is."""
    all_headers = {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}}
    if api_key is not None:
        all_headers["authorization"] = f"Bearer {api_key}"
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if isinstance(text, bytes):
        text = base64.b64encode(text).decode()
        base64_body = True
    elif text is not None and base64_body:
        text = base64.b64encode(text.encode()).decode()
    query_string = urllib.parse.urlencode(query or {})
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query_string,
        "headers": all_headers,
        **({"queryStringParameters": dict(query)} if query else {}),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "t",
            },
            "requestId": "apigw-req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1735689600000,
        },
        **({"body": text} if text is not None else {}),
        "isBase64Encoded": base64_body,
    }


@dataclass
class ApiAnswer:
    status: int
    json: Any
    headers: dict[str, str]


def gateway_call(event: dict[str, Any]) -> ApiAnswer:
    """Call ``functions/api/app.handler`` with ``event``, as API Gateway does; the decoded answer."""
    answer = load_function("api").handler(event, LambdaContext())
    body = answer.get("body") or "null"
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return ApiAnswer(answer["statusCode"], json.loads(body), answer.get("headers") or {})

"""API Gateway (HTTP API) in front of the local API function: routes and payload format 2.0.

An HTTP request becomes the event API Gateway would send (payload format 2.0) and goes to the API function,
whose answer becomes the HTTP response. As deployed, the HTTP API has no authorizer: every request reaches
the function, which checks its API key first (a missing header included), on every request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local.aws import ACCOUNT_ID
from infra.model import Route

logger = logging.getLogger(__name__)

API_ID = "local"
STAGE = "$default"
DEFAULT_ROUTE = "$default"
MAX_BODY_BYTES = 10 * 1024 * 1024  # an HTTP API's payload limit
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)


@dataclass(frozen=True)
class HttpRequest:
    """One request as it arrived: ``target`` is the request line's path and query string."""

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @classmethod
    def message(cls, status: int, text: str) -> HttpResponse:
        """API Gateway's own answers (``{"message": ...}``), e.g. when the function fails."""
        return cls(status, [("content-type", "application/json")], json.dumps({"message": text}).encode())


class RouteTable:
    """Matches ``METHOD /path`` against the API's routes; anything else takes the ``$default`` route."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = [(route, self._pattern(route.path)) for route in routes]

    @staticmethod
    def _pattern(path: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", path)
        regex = ""
        for part in parts:
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return re.compile(regex)

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        """The route key and path parameters (decoded) of a request."""
        for route, pattern in self._routes:
            found = pattern.fullmatch(path)
            if found and route.method in (method, "ANY"):
                return f"{route.method} {route.path}", {k: unquote(v) for k, v in found.groupdict().items()}
        return DEFAULT_ROUTE, {}


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return not kind or any(kind.startswith(t) or kind.endswith(t) for t in _TEXT_TYPES)


def request_event(
    request: HttpRequest,
    route_key: str,
    path_parameters: dict[str, str],
    *,
    request_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The payload format 2.0 event of ``request``."""
    url = urlsplit(request.target)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    query: dict[str, str] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    host = headers.get("host", "localhost")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": url.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": STAGE,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if request.body:
        if _is_text(headers.get("content-type", "")):
            with contextlib.suppress(UnicodeDecodeError):
                event["body"] = request.body.decode("utf-8")
        if "body" not in event:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def response_of(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a payload-2.0 function result."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway answers 200 with the result as a JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("content-type", "application/json")], text.encode())
    headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(name).lower(), str(v)) for v in values]
    headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or []]
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return HttpResponse(int(result["statusCode"]), headers, body)


Invoke = Callable[[dict[str, Any], str], Any]


class ApiGateway:
    """Routes a request to the API function, as API Gateway does."""

    def __init__(self, routes: Sequence[Route], *, api: Invoke) -> None:
        self._routes = RouteTable(routes)
        self._api = api

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = uuid.uuid4().hex[:16]
        path = urlsplit(request.target).path or "/"
        route_key, params = self._routes.match(request.method, path)
        event = request_event(request, route_key, params, request_id=request_id, now=datetime.now(UTC))
        try:
            result = self._api(event, request_id)
        except Exception:
            logger.exception("API function failed (request %s)", request_id)
            return HttpResponse.message(500, "Internal Server Error")
        response = response_of(result)
        return HttpResponse(
            response.status, [*response.headers, ("apigw-requestid", request_id)], response.body
        )

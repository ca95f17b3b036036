"""The HTTP API: one Powertools resolver holding each area's router; every error is DESIGN §2 JSON.

:func:`handle` is the whole request path: the API key (:func:`polos.api.keys.authenticate`, on every
request; the dashboard's static files, :mod:`polos.api.dashboard`, need none) and the body size are
checked before routing, then the resolver routes, validates (pydantic) and answers. Every answer other
than success is ``{"error": "<message naming the field or limit>", "error_type": "<code>"}``; unexpected
failures are logged with their traceback and answered ``500`` without it. Overload (a throttle or a timeout
of our own AWS calls, :class:`~polos.aws.overload.InfrastructureThrottled`) is ``503 throttled`` with
``Retry-After``, never ``500``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from polos.api import dashboard, keys
from polos.api.dead_letters import router as dead_letters_router
from polos.api.errors import (
    ApiError,
    IdempotencyConflict,
    NotFound,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
    ValidationFailed,
)
from polos.api.events import router as events_router
from polos.api.queues import router as queues_router
from polos.api.recovery import router as recovery_router
from polos.api.runs import router as runs_router
from polos.api.schedules import router as schedules_router
from polos.api.workflows import router as workflows_router
from polos.aws import observability, overload
from polos.errors import InvalidTopicError
from polos.publish.idempotency import IdempotencyConflictError
from polos.publish.publishing import EventTooLargeError, InvalidPublishError

logger = Logger(service="polos")

MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_REPORTED_ERRORS = 5
INTERNAL_ERROR = "internal error; see the API logs"
_ERROR_TYPES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "idempotency_conflict",
    413: "payload_too_large",
}


def _strict_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` and reports deep nesting as bad JSON."""

    def refuse(name: str) -> Any:
        raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_strict_json)
app.include_router(events_router)
app.include_router(runs_router)
app.include_router(recovery_router)
app.include_router(dead_letters_router)
app.include_router(workflows_router)
app.include_router(queues_router)
app.include_router(dashboard.router)
app.include_router(keys.router)
app.include_router(schedules_router)


def _respond(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, str]]:
    body = {"error": message, "error_type": error_type}
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _headers(error: ApiError) -> dict[str, str] | None:
    return {"Retry-After": str(error.retry_after)} if isinstance(error, Throttled) else None


def _throttled(exc: overload.InfrastructureThrottled) -> Throttled:
    logger.warning("overloaded: answered 503", extra={"operation": exc.operation, "reason": exc.reason})
    return Throttled(
        f"the service is overloaded ({exc.operation} {exc.reason}); nothing was stored that the request "
        f"did not finish: retry after {overload.RETRY_AFTER_SECONDS} s with the same Idempotency-Key",
        overload.RETRY_AFTER_SECONDS,
    )


def _field(loc: Sequence[Any]) -> str:
    """``("body", "events", 3, "data")`` → ``events[3].data``; headers and query parameters by name."""
    source, *path = loc or ("body",)
    if source == "header" and path:
        return "-".join(part.capitalize() for part in str(path[0]).split("-")) + " header"
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or ("body" if source == "body" else str(source))


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    loc = error.get("loc") or ("body",)
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "malformed")
        return f"body is not valid JSON: {detail} (at character {loc[-1]})"
    field = _field(loc)
    if kind == "extra_forbidden":
        return f"{field}: unknown field"
    if kind == "missing":
        return f"{field}: field required"
    if kind == "model_attributes_type" and field == "body":
        return "body must be a JSON object"
    return f"{field}: {error.get('msg', 'invalid')}"


def _as_api_error(exc: Exception) -> ApiError:
    """The answer for an error a route (or the request validation before it) raised on purpose."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestUnsupportedContentType):
        return ValidationFailed("body must be JSON (Content-Type: application/json)")
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        message = "; ".join(_describe(error) for error in errors[:MAX_REPORTED_ERRORS])
        if len(errors) > MAX_REPORTED_ERRORS:
            message += f"; and {len(errors) - MAX_REPORTED_ERRORS} more"
        return ValidationFailed(message or "invalid request")
    if isinstance(exc, UnicodeDecodeError):
        return ValidationFailed("body is not UTF-8 text")
    if isinstance(exc, EventTooLargeError):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, IdempotencyConflictError):
        return IdempotencyConflict(str(exc))
    if isinstance(exc, overload.InfrastructureThrottled):
        return _throttled(exc)
    return ValidationFailed(str(exc))  # InvalidTopicError, InvalidPublishError


def _expected(exc: Exception) -> Response[dict[str, str]]:
    if isinstance(exc, ServiceError):  # Powertools' own HTTP errors, should a route raise one
        return _respond(exc.status_code, _ERROR_TYPES.get(exc.status_code, "error"), str(exc.msg))
    error = _as_api_error(exc)
    return _respond(error.status, error.error_type, error.message, _headers(error))


def _unexpected(exc: Exception) -> Response[dict[str, str]]:
    logger.exception("request failed")
    return _respond(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", INTERNAL_ERROR)


def _no_route(exc: NotFoundError) -> Response[dict[str, str]]:
    event = app.current_event
    return _respond(NotFound.status, NotFound.error_type, f"no route for {event.http_method} {event.path}")


app.exception_handler(
    [
        ApiError,
        RequestValidationError,
        RequestUnsupportedContentType,
        UnicodeDecodeError,
        InvalidTopicError,
        InvalidPublishError,
        IdempotencyConflictError,
        overload.InfrastructureThrottled,
        ServiceError,
    ]
)(_expected)
app.exception_handler(Exception)(_unexpected)
app.not_found(_no_route)


def _body_size(event: Mapping[str, Any]) -> int:
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return len(body.encode())
    try:
        return len(base64.b64decode(body))
    except (binascii.Error, ValueError):
        return len(body)


def _answer(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A gate's answer, built directly: no route has run, so there is no resolver response to build on."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": json.dumps({"error": message, "error_type": error_type}, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _refuse(error: ApiError) -> dict[str, Any]:
    return _answer(error.status, error.error_type, error.message, _headers(error))


def routed_path(event: dict[str, Any]) -> str:
    """The path the resolver routes: ``rawPath`` without the stage (Powertools' own rule)."""
    return APIGatewayProxyEventV2(event).path


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer one HTTP API (payload 2.0) request: API key, its scope and body size first, then the routes.

    A refused key answers before anything else is read or stored, so a bad key learns nothing.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    key_id = None
    caller: keys.ApiKey | None = None
    try:
        # The dashboard's static files hold no data: the page asks for the key and sends it with each call.
        # Judged on the path the resolver routes (the stage stripped), never on ``rawPath``: under a stage
        # named ``ui`` every ``rawPath`` starts with ``/ui``, and API routes would skip the key.
        if not dashboard.is_public(http.get("method"), routed_path(event)):
            caller = keys.authenticate(event)
            key_id = caller.key_id
    except keys.KeyDenied as denied:
        answer = _refuse(Unauthorized(str(denied)))
    except overload.InfrastructureThrottled as exc:
        answer = _refuse(_throttled(exc))
    except Exception:  # the keys table did not answer: a JSON 500, never Lambda's own error
        logger.exception("API key check failed")
        answer = _answer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", INTERNAL_ERROR)
    else:
        method, path = str(http.get("method")), routed_path(event)
        needed = keys.required_scope(method, path)
        if caller is not None and needed is not None and not caller.may(needed):
            answer = _refuse(keys.refusal(caller, needed, f"{method} {path}"))
        elif (size := _body_size(event)) > MAX_BODY_BYTES:
            answer = _refuse(
                PayloadTooLarge(f"body is {size} bytes; at most {MAX_BODY_BYTES} (6 MB) are allowed")
            )
        else:
            try:
                app.append_context(**{keys.CALLER: caller})  # type: ignore[no-untyped-call]  # cleared by resolve
                answer = app.resolve(event, context)
            finally:
                observability.flush()
    status = answer.get("statusCode")
    logger.info(
        "request",
        extra={
            "method": http.get("method"),
            "path": event.get("rawPath"),
            "status": status,
            "key_id": key_id,
        },
    )
    return answer

"""The HTTP API's errors: ``{"error": "<human message>", "error_type": "<code>"}`` with a status."""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than success; the message names the field or limit at fault."""

    status = 400
    error_type = "validation_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


class ValidationFailed(ApiError):
    status = 400
    error_type = "validation_error"


class Unauthorized(ApiError):
    status = 401
    error_type = "unauthorized"


class Forbidden(ApiError):
    """The key is valid but its scope does not cover the request; the message names the scope needed."""

    status = 403
    error_type = "forbidden"


class NotFound(ApiError):
    status = 404
    error_type = "not_found"


class IdempotencyConflict(ApiError):
    status = 409
    error_type = "idempotency_conflict"


class PayloadTooLarge(ApiError):
    status = 413
    error_type = "payload_too_large"


class Conflict(ApiError):
    """The run is not in a state that allows the request (finished, already resumed)."""

    status = 409
    error_type = "conflict"


class Throttled(ApiError):
    """Our own AWS calls were throttled or timed out (overload): retry after ``retry_after`` seconds."""

    status = 503
    error_type = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

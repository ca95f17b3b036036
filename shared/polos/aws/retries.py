"""How our own AWS clients retry, and what they raise when the retries are spent.

:func:`install` replaces botocore's standard retry decision on a client with :func:`_needs_retry`: the same
retryable errors (botocore's ``StandardRetryConditions``: throttles, 5xx, timeouts, connection errors) plus a
``TransactionCanceledException`` cancelled only by throttling (which botocore does not retry; a cancelled
transaction applied nothing, so sending it again is safe), with exponential backoff and full jitter, and no
retry (nor first attempt) that could end after the invocation's time budget (:mod:`polos.aws.overload`).
A throttle or a timeout left after that is raised as :class:`InfrastructureThrottled`, so a caller never
mistakes it for a refused condition, and the worker and the API answer it as overload.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.retries.standard import RetryEventAdapter, StandardRetryConditions

from polos.aws.overload import InfrastructureThrottled, noted, seconds_left

if TYPE_CHECKING:
    from botocore.client import BaseClient

# One attempt takes at most a connection and a read: DynamoDB and SQS answer in milliseconds (our longest
# poll is a 1 s ReceiveMessage), so these bound a hung connection, not a slow answer.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 6
ATTEMPT_SECONDS = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
MAX_ATTEMPTS = 5  # per call; the budget may allow fewer
THROTTLE_BASE_SECONDS = 0.2
OTHER_BASE_SECONDS = 0.025
MAX_DELAY_SECONDS = 5.0

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "OverLimit",  # SQS: too many in-flight messages
        "SlowDown",
    }
)
# A transaction's cancellation reasons when it was cancelled by throttling alone (``None`` / ``"None"``:
# that element was fine).
_THROTTLED_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
_FINE_REASONS = frozenset({None, "None"})
_TIMEOUTS = (BotoConnectionError, ReadTimeoutError, ConnectionClosedError)

_adapter = RetryEventAdapter()
_conditions = StandardRetryConditions(max_attempts=MAX_ATTEMPTS)


def error_code(parsed: Any) -> str:
    """The error code of a parsed answer, without a namespace (``AWS.SimpleQueueService.X`` → ``X``)."""
    error = (parsed or {}).get("Error") or {}
    code = str(error.get("QueryErrorCode") or error.get("Code") or "")
    return code.rsplit(".", 1)[-1]


def throttled_transaction(parsed: Any) -> bool:
    """Whether a ``TransactionCanceledException`` was cancelled by throttling and nothing else."""
    if error_code(parsed) != "TransactionCanceledException":
        return False
    codes = {reason.get("Code") for reason in (parsed or {}).get("CancellationReasons") or []}
    return bool(codes & _THROTTLED_REASONS) and codes <= _THROTTLED_REASONS | _FINE_REASONS


def is_throttle(parsed: Any, status: int) -> bool:
    """Whether an error answer says the service is overloaded (a throttle, a 503, a throttled transaction)."""
    return status == 503 or error_code(parsed) in THROTTLE_CODES or throttled_transaction(parsed)


def _delay(attempt: int, throttled: bool) -> float:
    """Full jitter: uniform in [0, min(cap, base x 2^(attempt-1))]."""
    base = THROTTLE_BASE_SECONDS if throttled else OTHER_BASE_SECONDS
    return random.uniform(0, min(MAX_DELAY_SECONDS, base * 2 ** (attempt - 1)))


def _needs_retry(**kwargs: Any) -> float | None:
    """botocore's ``needs-retry`` handler: the pause before the next attempt, ``None`` for none."""
    context = _adapter.create_retry_context(**kwargs)
    attempt = context.attempt_number
    parsed = context.parsed_response
    transaction = attempt < MAX_ATTEMPTS and throttled_transaction(parsed)
    if not (transaction or _conditions.is_retryable(context)):
        return None
    status = context.http_response.status_code if context.http_response is not None else 0
    delay = _delay(attempt, parsed is not None and is_throttle(parsed, status))
    left = seconds_left()
    if left is not None and delay + ATTEMPT_SECONDS > left:
        return None  # the next attempt could end after the budget: answer with what we have
    return delay


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


def _check_budget(event_name: str, **_: Any) -> None:
    """``before-call``: refuse a call that could end after the budget (the caller answers overload)."""
    left = seconds_left()
    if left is not None and left < ATTEMPT_SECONDS:
        raise noted(
            InfrastructureThrottled(
                _operation(event_name), "timeout", f"{max(left, 0):.1f} s left in this invocation's budget"
            )
        )


def _raise_throttle(event_name: str, http_response: Any, parsed: Any, **_: Any) -> None:
    """``after-call``: a throttle left after the retries becomes :class:`InfrastructureThrottled`."""
    status = int(getattr(http_response, "status_code", 200))
    if status >= 300 and is_throttle(parsed, status):
        message = ((parsed or {}).get("Error") or {}).get("Message", "")
        detail = f"{error_code(parsed)}: {message}"
        raise noted(InfrastructureThrottled(_operation(event_name), "throttled", detail))


def _raise_timeout(event_name: str, exception: Exception, **_: Any) -> None:
    """``after-call-error``: a timeout or lost connection left after the retries, likewise."""
    if isinstance(exception, _TIMEOUTS):
        detail = f"{type(exception).__name__}: {exception}"
        raise noted(InfrastructureThrottled(_operation(event_name), "timeout", detail)) from exception


def install(client: BaseClient) -> None:
    """Put these retries and this error on ``client`` (made with botocore's ``standard`` retry mode)."""
    name = client.meta.service_model.service_id.hyphenize()
    events = client.meta.events
    events.unregister(f"needs-retry.{name}", unique_id=f"retry-config-{name}")
    events.register(f"needs-retry.{name}", _needs_retry, unique_id=f"polos-retry-{name}")  # type: ignore[arg-type]
    events.register(f"before-call.{name}", _check_budget, unique_id=f"polos-budget-{name}")
    events.register(f"after-call.{name}", _raise_throttle, unique_id=f"polos-throttle-{name}")
    events.register(f"after-call-error.{name}", _raise_timeout, unique_id=f"polos-timeout-{name}")

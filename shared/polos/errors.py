"""Exceptions users see. Everything here is importable from ``polos``."""

from __future__ import annotations

from typing import TYPE_CHECKING

# A throttle or timeout of Polos's own AWS calls: an infrastructure failure, never a workflow's (it lives with
# the AWS clients that raise it, in the lowest layer).
from polos.aws.overload import InfrastructureThrottled as InfrastructureThrottled

if TYPE_CHECKING:
    from pydantic import ValidationError


class PolosError(Exception):
    """Base class of every error Polos raises on purpose."""


class WorkflowDefinitionError(PolosError, ValueError):
    """A ``@workflow`` declaration breaks a rule (raised at decoration time)."""


class InvalidTopicError(PolosError, ValueError):
    """A topic string is not of the form ``segment(/segment)*``."""


class NonRetryableError(PolosError):
    """Raise from a workflow or step to fail the run at once, without further attempts."""


class StepExecutionError(PolosError):
    """A step's function kept failing after all its in-process retries; the cause is chained."""

    def __init__(self, key: str, attempts: int, cause: BaseException) -> None:
        super().__init__(f"step {key!r} failed after {attempts} attempt(s): {type(cause).__name__}: {cause}")
        self.key = key
        self.attempts = attempts


class StepTimeoutError(PolosError, TimeoutError):
    """A step's call ran longer than its ``timeout`` (an async function is cancelled; a sync one's result
    is ignored)."""


class WaitTimeoutError(PolosError):
    """A wait for an event, a resume or a child run passed its timeout (the cause of the step's error)."""


class StepKeyError(NonRetryableError):
    """A step key is not a non-empty string of at most 512 characters."""


class StepKeyReusedError(StepKeyError):
    """Two step calls in one run used the same key."""


class StepArgumentError(NonRetryableError, ValueError):
    """A step method got an argument it cannot take (a wait of -1 s, a naive string instead of a time)."""


class StepResultError(NonRetryableError):
    """A step's (or workflow's) result cannot be journaled: not JSON-serialisable or too large."""


class PayloadValidationError(NonRetryableError):
    """A run's payload does not fit the handler's annotation."""


class RunLeaseLostError(PolosError):
    """This attempt no longer holds the run's lease; it stops before executing anything else."""


class WorkflowRunError(PolosError):
    """A run awaited through a handle ended ``failed``."""

    def __init__(self, run_id: str, error_type: str, message: str) -> None:
        super().__init__(f"run {run_id} failed: {error_type}: {message}")
        self.run_id = run_id
        self.error_type = error_type
        self.error_message = message


class PolosAPIError(PolosError):
    """The Polos HTTP API answered with an error."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.error_message = message


def validation_summary(exc: ValidationError, root: str) -> str:
    """``root.field[2].name: message; ...`` — pydantic's errors, each naming its field, on one line."""
    parts = []
    for error in exc.errors(include_url=False):
        path = root
        for loc in error["loc"]:
            path += f"[{loc}]" if isinstance(loc, int) else f".{loc}"
        parts.append(f"{path}: {error['msg']}")
    return "; ".join(parts)

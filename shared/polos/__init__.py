"""Polos Serverless: event-triggered durable workflows on your own AWS account.

The public names load on first use (module ``__getattr__``), so a Lambda handler that imports one part of
the package does not pay for the others at cold start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polos.client import ExecutionHandle, PolosClient, WorkflowHandle
    from polos.context import WorkflowContext
    from polos.definition import Workflow, workflow
    from polos.errors import NonRetryableError, StepExecutionError, WorkflowRunError
    from polos.official import Polos
    from polos.payloads import BatchEventPayload, EventItem, EventPayload, PayloadEvent, SchedulePayload
    from polos.queues import Queue, queue
    from polos.state import WorkflowState
    from polos.types.types import BatchStepResult, BatchWorkflowInput

_HOMES: dict[str, str] = {
    "BatchEventPayload": "polos.payloads",
    "BatchStepResult": "polos.types.types",
    "BatchWorkflowInput": "polos.types.types",
    "EventItem": "polos.payloads",
    "EventPayload": "polos.payloads",
    "PayloadEvent": "polos.payloads",
    "SchedulePayload": "polos.payloads",
    "NonRetryableError": "polos.errors",
    "StepExecutionError": "polos.errors",
    "WorkflowRunError": "polos.errors",
    "PolosClient": "polos.client",
    "Polos": "polos.official",
    "ExecutionHandle": "polos.client",
    "WorkflowHandle": "polos.client",
    "WorkflowContext": "polos.context",
    "Workflow": "polos.definition",
    "workflow": "polos.definition",
    "WorkflowState": "polos.state",
    "Queue": "polos.queues",
    "queue": "polos.queues",
}

__all__ = [  # a literal list, so linters and type checkers see the names; a test keeps it equal to _HOMES
    "BatchEventPayload",
    "BatchStepResult",
    "BatchWorkflowInput",
    "EventItem",
    "EventPayload",
    "ExecutionHandle",
    "NonRetryableError",
    "PayloadEvent",
    "Polos",
    "PolosClient",
    "Queue",
    "SchedulePayload",
    "StepExecutionError",
    "Workflow",
    "WorkflowContext",
    "WorkflowHandle",
    "WorkflowRunError",
    "WorkflowState",
    "queue",
    "workflow",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'polos' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])

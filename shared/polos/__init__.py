"""Polos Serverless: event-triggered durable workflows on your own AWS account."""

from polos.client import PolosClient, WorkflowHandle
from polos.context import WorkflowContext
from polos.errors import NonRetryableError, StepExecutionError, WorkflowRunError
from polos.payloads import BatchEventPayload, EventItem, EventPayload, PayloadEvent
from polos.workflow import Workflow, workflow

__all__ = [
    "BatchEventPayload",
    "EventItem",
    "EventPayload",
    "NonRetryableError",
    "PayloadEvent",
    "PolosClient",
    "StepExecutionError",
    "Workflow",
    "WorkflowContext",
    "WorkflowHandle",
    "WorkflowRunError",
    "workflow",
]

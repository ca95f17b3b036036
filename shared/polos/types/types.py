"""``BatchWorkflowInput`` and ``BatchStepResult``: what ``ctx.step.batch_invoke`` and
``batch_invoke_and_wait`` take and give (the official SDK's names and fields)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class BatchWorkflowInput(BaseModel):
    """One child run to start: the workflow ``id`` (a workflow's id string) and its ``payload``.

    Fields the official SDK has and this product does not honour per child (``initial_state``,
    ``run_timeout_seconds``) are refused, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    id: str
    payload: Any = None


class BatchStepResult(BaseModel):
    """The outcome of one child of ``batch_invoke_and_wait``: its workflow, whether it completed, its
    result when it did, else its error (``"<type>: <message>"``, or that it was cancelled)."""

    model_config = ConfigDict(extra="ignore")

    workflow_id: str
    success: bool
    result: Any = None
    error: str | None = None

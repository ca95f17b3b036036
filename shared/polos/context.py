"""``WorkflowContext``: what a workflow handler gets besides its payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polos.steps import StepAPI


@dataclass
class WorkflowContext:
    """What a workflow handler gets besides its payload."""

    workflow_id: str
    run_id: str
    attempt: int
    created_at: datetime
    step: StepAPI
    # ``@workflow(state_schema=Model)``: that model, from ``initial_state`` or its defaults (polos.state).
    state: Any = None

"""Data types shared with the official Polos SDK's ``polos.types`` (fan-out inputs and results)."""

from polos.types.types import BatchStepResult, BatchWorkflowInput

__all__ = ["BatchStepResult", "BatchWorkflowInput"]

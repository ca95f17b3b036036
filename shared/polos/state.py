"""``polos.WorkflowState``: the base of a workflow's ``state_schema`` (``ctx.state``).

``@workflow(state_schema=Model)`` gives each run a ``ctx.state`` of that model, built from the run's
``initial_state`` (the invoke argument / HTTP field) or the model's defaults. It is saved with each outcome
the run records and shown as ``state`` on the run. Replays stay deterministic: every attempt starts again
from the initial state and the handler's code, replayed over its journaled steps, makes the same changes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from polos.errors import NonRetryableError, WorkflowDefinitionError, validation_summary

MAX_STATE_BYTES = 64 * 1024  # a run item holds its initial and current state beside its payload and result


class WorkflowState(BaseModel):
    """Base class of workflow state: a pydantic model whose assignments are validated."""

    model_config = ConfigDict(validate_assignment=True)


class StateError(NonRetryableError):
    """``initial_state`` does not fit the workflow's ``state_schema``, or the state grew too large."""


def check_schema(workflow_id: str, schema: object) -> type[BaseModel] | None:
    """``state_schema`` as given to ``@workflow``: a pydantic model class, or ``None``."""
    if schema is None:
        return None
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise WorkflowDefinitionError(
            f"workflow {workflow_id!r}: state_schema must be a pydantic model class "
            f"(a polos.WorkflowState subclass), got {schema!r}"
        )
    try:
        schema()
    except ValidationError as exc:
        raise WorkflowDefinitionError(
            f"workflow {workflow_id!r}: state_schema {schema.__name__} needs a default for every field "
            f"(a run without initial_state starts from them): {validation_summary(exc, 'state')}"
        ) from None
    return schema


def build(workflow_id: str, schema: type[BaseModel], initial: Any) -> BaseModel:
    """The state a run starts from: ``initial`` (a dict or a model) validated, else the defaults."""
    if isinstance(initial, BaseModel):
        initial = initial.model_dump(mode="json")
    if initial is None:
        return schema()
    try:
        return schema.model_validate(initial)
    except ValidationError as exc:
        summary = validation_summary(exc, "initial_state")
        raise StateError(f"initial_state of workflow {workflow_id!r} is invalid: {summary}") from None


def initial(workflow_id: str, schema: type[BaseModel] | None, given: Any) -> BaseModel | None:
    """``ctx.state`` at the start of an attempt (``None`` without a schema; ``StateError`` when an
    ``initial_state`` was given to a workflow that has no schema: it would be ignored)."""
    if schema is None:
        if given:  # {} is no state
            raise StateError(f"initial_state: workflow {workflow_id!r} has no state_schema to hold it")
        return None
    return build(workflow_id, schema, given)


def dump(state: BaseModel) -> str:
    """The state as saved (compact JSON), at most :data:`MAX_STATE_BYTES`."""
    text = state.model_dump_json()
    if len(text.encode()) > MAX_STATE_BYTES:
        raise StateError(
            f"ctx.state is {len(text.encode())} bytes as JSON; at most {MAX_STATE_BYTES} are saved"
        )
    return text

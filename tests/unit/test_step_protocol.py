"""``ctx.step`` is typed by the public protocol ``polos.steps.StepAPI``, which the runtime implements."""

from __future__ import annotations

import inspect
import typing

from polos import steps
from polos.context import WorkflowContext
from polos.runtime.steps import StepRunner
from polos.steps import StepAPI


def public_methods(cls: type) -> dict[str, typing.Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


def test_the_context_types_step_with_the_public_protocol() -> None:
    # the context names the type only for type checkers: resolve it among the public protocol's names
    hints = typing.get_type_hints(WorkflowContext, localns=vars(steps))
    assert hints["step"] is StepAPI


def test_the_protocol_documents_every_step_method_the_runtime_offers() -> None:
    offered = public_methods(StepRunner)
    declared = public_methods(StepAPI)
    assert sorted(declared) == sorted(offered)
    for name, method in declared.items():
        assert inspect.getdoc(method), f"StepAPI.{name} has no docstring"
        assert inspect.signature(method) == inspect.signature(offered[name]), name


def test_the_runtime_implements_the_protocol() -> None:
    assert StepAPI in StepRunner.__mro__  # declared, so mypy checks every method against the protocol

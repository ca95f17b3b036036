"""What runs cost, at list prices, where something meters them: ``polos dev`` installs its meter here.

Outside ``polos dev`` (on AWS) nothing is installed and every answer is ``None``: the runs API then carries
no ``cost``. The runtime never imports the local stack; the dev server hands its meter over through
:func:`install`.
"""

from __future__ import annotations

from typing import Any, Protocol


class CostSource(Protocol):
    """What a meter answers: a run's cost and a workflow's cost per million runs (``None``: not metered)."""

    def run_cost(self, run_id: str) -> dict[str, Any] | None: ...

    def workflow_cost(self, workflow_id: str) -> dict[str, Any] | None: ...


_source: CostSource | None = None


def install(source: CostSource | None) -> None:
    """Price runs with ``source`` from now on (``None``: stop)."""
    global _source
    _source = source


def run_cost(run_id: str) -> dict[str, Any] | None:
    """``{"usd", "requests", "by_service": {service: usd}}`` of every AWS request the run made."""
    return None if _source is None else _source.run_cost(run_id)


def workflow_cost(workflow_id: str) -> dict[str, Any] | None:
    """``{"usd_per_million_runs", "runs_metered"}``: the workflow's mean run cost so far, per million runs."""
    return None if _source is None else _source.workflow_cost(workflow_id)

"""Logs, metrics and traces of the worker: Powertools Logger, Metrics (EMF) and Tracer.

Runs of one invocation execute concurrently in one event loop, so per-run log keys live in a context
variable (Powertools' ``thread_safe_append_keys``): every asyncio task, and every thread it hands work to,
logs its own run's keys without seeing another run's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from polos.aws import attribution, settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = TypeVar("Handler", bound=Callable[..., Any])

# Powertools' own variable (set in the template); Polos is the namespace when it is unset.
METRICS_NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
DEFAULT_METRICS_NAMESPACE = "Polos"

logger = Logger(service="polos")
metrics = Metrics(
    namespace=os.environ.get(METRICS_NAMESPACE_ENV) or DEFAULT_METRICS_NAMESPACE, service="polos"
)


@functools.cache
def tracer() -> Tracer | None:
    """Powertools' Tracer when X-Ray tracing is on (``POLOS_TRACING=Active``), else ``None``.

    Built on first use: constructing it imports the X-Ray SDK (~0.5 s), which a handler with tracing off
    must not pay at cold start.
    """
    if not settings.get_settings().tracing:
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service="polos")


def traced(handler: Handler) -> Handler:
    """``handler`` under ``Tracer.capture_lambda_handler`` when tracing is on; unchanged otherwise."""

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        active = tracer()
        if active is None:
            return handler(event, context)
        return active.capture_lambda_handler(handler, capture_response=False)(event, context)

    return run  # type: ignore[return-value]


@contextmanager
def step_segment(key: str) -> Iterator[None]:
    """An X-Ray subsegment around one step's calls (a no-op when tracing is off)."""
    active = tracer()
    if active is None:
        yield
        return
    with active.provider.in_subsegment(f"## step {key}") as subsegment:
        subsegment.put_annotation("step_key", key)
        yield


def bind_run(run_id: str, workflow_id: str, event_ids: list[str]) -> None:
    """Log ``run_id``, ``workflow_id`` and the event (``event_id``, or ``event_count`` for a batch run) on
    every line of the current task from now on, and attribute its AWS requests to the run (``polos dev``
    prices each run by them: :mod:`polos.aws.attribution`).

    Compact on purpose (CloudWatch Logs bills every byte of every line): a batch run's event ids are on its
    run item (``GET /api/v1/runs/{id}``), not repeated on each line.
    """
    keys: dict[str, object] = {"run_id": run_id, "workflow_id": workflow_id}
    if len(event_ids) == 1:
        keys["event_id"] = event_ids[0]
    elif event_ids:
        keys["event_count"] = len(event_ids)
    logger.thread_safe_append_keys(**keys)
    attribution.attribute(run_id, workflow_id)


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    metrics.add_metric(name=name, unit=unit, value=value)


class _AttemptsOf(Protocol):
    @property
    def attempts(self) -> int: ...


class AttemptOutcome(Protocol):
    """What :func:`record_outcome` reads of an attempt's result (the runtime's ``AttemptResult``)."""

    @property
    def outcome(self) -> str: ...

    @property
    def run(self) -> _AttemptsOf | None: ...


def record_outcome(result: AttemptOutcome) -> None:
    """RunsStarted / RunsCompleted / RunsFailed for one attempt."""
    executed = result.outcome in ("completed", "failed", "exhausted", "retry")
    if executed and result.run is not None and result.run.attempts == 1:
        count("RunsStarted")
    if result.outcome == "completed":
        count("RunsCompleted")
    elif result.outcome in ("failed", "exhausted"):
        count("RunsFailed")


def flush() -> None:
    """Write this invocation's metrics (one EMF document) when there are any."""
    if metrics.metric_set:
        metrics.flush_metrics()

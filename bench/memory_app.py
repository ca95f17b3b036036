"""The memory benchmark's app: one batch workflow of the largest batch (10,000 events, 300 s window)."""

from __future__ import annotations

from polos.app import App
from polos.definition import MAX_BATCH_SIZE, MAX_BATCH_WINDOW_SECONDS, Workflow

from bench.workload import Shape, make_workflow

LARGEST = Shape(subscribers=1, steps=1, batch=True)
WORKFLOWS: list[Workflow] = [
    make_workflow(
        "memory-largest-batch",
        LARGEST,
        module=__name__,
        batch_size=MAX_BATCH_SIZE,
        batch_timeout_seconds=MAX_BATCH_WINDOW_SECONDS,
    )
]


def app() -> App:
    return App(__name__, WORKFLOWS)

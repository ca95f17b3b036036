"""The throughput benchmark's app: three 1-step workflows subscribed to one topic."""

from __future__ import annotations

from polos.app import App
from polos.definition import Workflow

from bench.workload import Shape, make_workflow

TOPIC = "bench/throughput"
SHAPE = Shape(subscribers=3, steps=1, batch=False)
WORKFLOWS: list[Workflow] = [make_workflow(f"throughput-{i}", SHAPE, TOPIC, __name__) for i in range(3)]


def app() -> App:
    return App(__name__, WORKFLOWS)

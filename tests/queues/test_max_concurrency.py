"""``@workflow(max_concurrency=N)``: the mapping's ScalingConfig.MaximumConcurrency in the template, and at
most N invocations at once under ``polos dev``'s mapping with several pollers."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.testing import Stack, local_stack

from infra.model import build_model
from infra.template import render_template

_lock = threading.Lock()
_active: Counter[int] = Counter()  # runs in progress per invocation thread
PEAKS: list[int] = []  # invocations in progress, seen at each run's start


async def _hold() -> None:
    await asyncio.sleep(0.3)


@workflow(id="mc-capped", trigger_on_event="mc/capped", max_concurrency=2)
async def capped(ctx: WorkflowContext, payload: EventPayload) -> None:
    thread = threading.get_ident()
    with _lock:
        _active[thread] += 1
        PEAKS.append(sum(1 for count in _active.values() if count))
    try:
        await _hold()
    finally:
        with _lock:
            _active[thread] -= 1


def test_the_template_renders_max_concurrency_as_the_mappings_scaling_config() -> None:
    @workflow(id="mc-free", trigger_on_event="mc/free")
    async def free(ctx: WorkflowContext, payload: EventPayload) -> None: ...

    doc = render_template(build_model(App("mc", [capped, free])), "app")
    mappings = {
        name: resource["Properties"]
        for name, resource in doc["Resources"].items()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert mappings["EventSourceMcCapped"]["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert "ScalingConfig" not in mappings["EventSourceMcFree"]


@pytest.fixture
def stack() -> Iterator[Stack]:
    PEAKS.clear()
    _active.clear()
    with local_stack(App("mc", [capped]), aws_faults="pollers=4") as opened:
        yield opened


def test_polos_dev_invokes_at_most_max_concurrency_at_once_with_four_pollers(stack: Stack) -> None:
    for _ in range(12):
        stack.publish("mc/capped", [{"data": {"n": n}} for n in range(10)])
    stack.drain()
    assert len(PEAKS) >= 120, Counter(PEAKS)
    assert max(PEAKS) == 2, Counter(PEAKS)  # reached, never passed

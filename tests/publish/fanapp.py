"""A test app whose topic ``fan/out`` has three subscribers (two single-event, one batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.stack import provision
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App

TOPIC = "fan/out"


@workflow(id="fan-a", trigger_on_event="fan/out")
async def fan_a(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


@workflow(id="fan-b", trigger_on_event="fan.out")
async def fan_b(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


@workflow(id="fan-batch", trigger_on_event="fan/out", batch_size=5, batch_timeout_seconds=1)
async def fan_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    return None


@workflow(id="fan-other", trigger_on_event="other/topic")
async def fan_other(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


FAN_APP = App("fan", [fan_a, fan_b, fan_batch, fan_other])
SUBSCRIBERS = ["fan-a", "fan-b", "fan-batch"]


def provision_fan_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision(FAN_APP, tmp_path, monkeypatch)

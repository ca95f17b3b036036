"""What handlers import at cold start: not the X-Ray SDK unless tracing is on, not Powertools' parser models,
not boto3 (clients come from botocore alone: boto3 drags in s3transfer), and the worker not the HTTP API.

X-Ray tracing is opt-in; on, steps get subsegments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from polos.aws import observability, settings

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ["api/app.py", "worker/app.py"]


HEAVY = ("aws_xray_sdk", "aws_lambda_powertools.utilities.parser.models", "boto3", "s3transfer")
# What one handler needs and another must not pay for (cold start, issue 12). The worker reports partial
# batches itself (polos.runtime.partial_batch): Powertools' batch package imports every event data class.
# croniter comes with the first schedule an app defines; the API validates a run status filter without
# the run records.
NOT_IN = {
    "worker/app.py": (
        "polos.api",
        "aws_lambda_powertools.event_handler",
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes",
        "croniter",
    ),
    "api/app.py": ("croniter", "polos.definition", "polos.runtime.records"),
}


def _heavy_imports(handler: str, tracing: str | None, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != settings.ENV_TRACING}
    if tracing is not None:
        env[settings.ENV_TRACING] = tracing
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])
    module = handler.removesuffix(".py").replace("/", ".")
    probe = f"import sys, {module} as m; m.handler; print(*[n for n in {heavy!r} if n in sys.modules])"
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return answer.stdout.split()


@pytest.mark.parametrize("handler", HANDLERS)
def test_handlers_import_no_heavy_module_when_tracing_is_off(handler: str) -> None:
    assert _heavy_imports(handler, None) == []
    assert _heavy_imports(handler, "PassThrough") == []


@pytest.mark.parametrize("handler", sorted(NOT_IN))
def test_handlers_import_only_what_they_need(handler: str) -> None:
    assert _heavy_imports(handler, None, NOT_IN[handler]) == []


def test_the_keys_module_does_not_need_the_payload_models() -> None:
    """The authorizer's path checks a key: its module imports neither pydantic nor the payload models (the
    package it lives in may; see docs/benchmarks.md)."""
    source = (ROOT / "shared" / "polos" / "api" / "keys.py").read_text()
    assert "polos.payloads" not in source and "pydantic" not in source
    env = {**os.environ, "PYTHONPATH": str(ROOT / "shared")}
    probe = (
        "import sys, polos.timestamps, polos.aws.settings\n"
        "print(*[m in sys.modules for m in ('pydantic', 'boto3')])"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["False", "False"]


def test_tracer_exists_only_when_tracing_is_active(monkeypatch: pytest.MonkeyPatch) -> None:
    observability.tracer.cache_clear()
    monkeypatch.setenv(settings.ENV_TRACING, "PassThrough")
    settings.reset()
    assert observability.tracer() is None
    observability.tracer.cache_clear()
    monkeypatch.setenv(settings.ENV_TRACING, "Active")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here: record nothing
    settings.reset()
    try:
        active = observability.tracer()
        assert active is not None
        with observability.step_segment("key"):
            pass
    finally:
        observability.tracer.cache_clear()
        settings.reset()


def test_the_api_builds_no_workflow_payload_model() -> None:
    """The API stores events (EventItem) and runs no workflow: the payload models are built on first use."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])}
    probe = (
        "import api.app, polos.payloads as p\n"
        "print(*[m.__pydantic_complete__ for m in "
        "(p.EventItem, p.EventPayload, p.BatchEventPayload, p.SchedulePayload)])"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["True", "False", "False", "False"]

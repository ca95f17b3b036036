"""X-Ray tracing is opt-in: off, no handler imports the X-Ray SDK; on, steps get subsegments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from polos import observability, settings

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ["api/app.py", "authorizer/app.py", "worker/app.py"]


def _imports_xray(handler: str, tracing: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != settings.ENV_TRACING}
    if tracing is not None:
        env[settings.ENV_TRACING] = tracing
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])
    module = handler.removesuffix(".py").replace("/", ".")
    probe = f"import sys, {module} as m; m.handler; print('aws_xray_sdk' in sys.modules)"
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return answer.stdout.strip() == "True"


@pytest.mark.parametrize("handler", HANDLERS)
def test_handlers_do_not_import_xray_when_tracing_is_off(handler: str) -> None:
    assert _imports_xray(handler, None) is False
    assert _imports_xray(handler, "PassThrough") is False


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

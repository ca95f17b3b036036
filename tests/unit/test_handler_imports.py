"""What handlers import at cold start: not the X-Ray SDK unless tracing is on, not Powertools' parser models.

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


HEAVY = ("aws_xray_sdk", "aws_lambda_powertools.utilities.parser.models")


def _heavy_imports(handler: str, tracing: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != settings.ENV_TRACING}
    if tracing is not None:
        env[settings.ENV_TRACING] = tracing
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])
    module = handler.removesuffix(".py").replace("/", ".")
    probe = f"import sys, {module} as m; m.handler; print(*[n for n in {HEAVY!r} if n in sys.modules])"
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return answer.stdout.split()


@pytest.mark.parametrize("handler", HANDLERS)
def test_handlers_import_no_heavy_module_when_tracing_is_off(handler: str) -> None:
    assert _heavy_imports(handler, None) == []
    assert _heavy_imports(handler, "PassThrough") == []


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

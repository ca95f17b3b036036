"""The official Polos client (``polos-sdk``, in its own venv) resumes and cancels runs of ``polos dev``."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import DevProcess, clean_env, get_json
from helpers.sdk_venv import INSTALL_SECONDS, sdk_python
from helpers.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(INSTALL_SECONDS + 120)]

SCRIPT = Path(__file__).resolve().parent / "sdk" / "official_client.py"
UNKNOWN_RUN = "run_" + "0" * 26


def _official(server: DevProcess, *words: str) -> list[Any]:
    """The answers of ``official_client.py``'s commands, run with the official client."""
    env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(sdk_python()), str(SCRIPT), server.url, server.api_key, *words],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    answers: list[Any] = json.loads(done.stdout.splitlines()[-1])
    return answers


def _run(server: DevProcess, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = get_json(server, f"/api/v1/runs/{run_id}")
    return run


def _when(server: DevProcess, run_id: str, status: str) -> dict[str, Any]:
    return wait_until(
        lambda: (run := _run(server, run_id))["status"] == status and run,
        timeout=30,
        what=f"run {run_id} to be {status}",
    )


def test_official_client_resumes_and_cancels_runs(seed_server: DevProcess) -> None:
    sdk_python()  # made (or skipped) before any run is started
    client = seed_server.client()
    approve, drop = (
        asyncio.run(client.start_workflow("expense-approval", {"request_id": name, "amount": 12.5})).run_id
        for name in ("sdk-approve", "sdk-drop")
    )
    for run_id in (approve, drop):
        _when(seed_server, run_id, "waiting")

    # resume(workflow_id, execution_id, step_key, data) publishes resume_approval on the run's topic.
    answers = _official(
        seed_server,
        "resume",
        "expense-approval",
        approve,
        "approval",
        json.dumps({"approved": True, "by": "sdk"}),
        "cancel",
        drop,
    )
    assert answers == [None, True]
    assert _run(seed_server, drop)["status"] == "cancelled"  # a waiting run is cancelled at once
    done = _when(seed_server, approve, "completed")
    assert done["result"] == {"request_id": "sdk-approve", "approved": True}
    steps = {step["key"]: step for step in done["steps"]}
    assert steps["approval"]["result"] == {"approved": True, "by": "sdk"}
    assert steps["pay"]["status"] == "completed"

    # A finished run and an unknown one: False (the API answers 409 and 404).
    assert _official(seed_server, "cancel", approve, "cancel", UNKNOWN_RUN) == [False, False]
    assert _run(seed_server, approve)["status"] == "completed"
    cancelled = _run(seed_server, drop)
    assert cancelled["status"] == "cancelled"
    assert "pay" not in {step["key"] for step in cancelled["steps"]}

"""A waiting run over HTTP against ``polos dev``: parked as ``waiting``, resumed within 1 s of its time."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
from helpers.dev_process import ROOT, DevProcess, get_json
from helpers.waiting import wait_until

pytestmark = pytest.mark.e2e

TRIAL_SECONDS = 11  # past the 10 s a wait may sleep inside its attempt
# How late the resume may come: within a second, and under `make chaos`'s faults also after the backoff of
# the throttled calls on its way (polos.aws.retries: 0.2 s doubling, full jitter; a few calls at 5 %).
LATE_SECONDS = 3.0 if os.environ.get("POLOS_AWS_FAULTS") else 1.0


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_trial_reminder_waits_then_resumes_on_time(seed_server: DevProcess) -> None:
    client = seed_server.client()
    handle = asyncio.run(
        client.start_workflow("trial-reminder", {"user_id": "u_e2e", "trial_seconds": TRIAL_SECONDS})
    )

    def waiting() -> dict[str, Any] | None:
        run: dict[str, Any] = get_json(seed_server, f"/api/v1/runs/{handle.run_id}")
        return run if run["status"] == "waiting" else None

    parked = wait_until(waiting, timeout=30, what="the run to wait")
    assert parked["waiting_for"]["kind"] == "timer" and parked["waiting_for"]["step"] == "trial_period"
    assert [step["status"] for step in parked["steps"]] == ["completed", "waiting"]
    listed = get_json(seed_server, "/api/v1/runs?status=waiting")["runs"]
    assert handle.run_id in [run["run_id"] for run in listed]
    shown = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "runs", "--status", "waiting"],
        cwd=ROOT,
        env={**os.environ, "POLOS_API_URL": seed_server.url, "POLOS_API_KEY": seed_server.api_key},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert handle.run_id in shown and "waits for timer (step trial_period) until" in shown

    def completed() -> dict[str, Any] | None:
        run: dict[str, Any] = get_json(seed_server, f"/api/v1/runs/{handle.run_id}")
        return run if run["status"] == "completed" else None

    done = wait_until(completed, timeout=TRIAL_SECONDS + 30, what="the run to resume and complete")
    until = _time(parked["waiting_for"]["until"])
    resumed = _time(done["steps"][1]["finished_at"])
    assert until <= resumed <= until + LATE_SECONDS, f"resumed {resumed - until:.2f} s after its time"
    assert done["result"] == {"user_id": "u_e2e", "reminded": True}
    assert [step["attempts"] for step in done["steps"]] == [1, 0, 1]

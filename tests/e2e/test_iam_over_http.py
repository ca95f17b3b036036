"""``polos dev --aws-faults iam``: the worker's calls are authorised by its role in the template."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import ROOT, DevProcess, get_json
from helpers.waiting import wait_until

from infra.cli.main import main

pytestmark = pytest.mark.e2e

IAM_APP = ROOT / "tests" / "e2e" / "apps" / "iam_app.py"


@pytest.fixture
def iam_server(tmp_path: Path) -> Iterator[DevProcess]:
    with (tmp_path / "iam.log").open("w") as log:
        server = DevProcess(log, "--app", str(IAM_APP.relative_to(ROOT)), "--aws-faults", "iam")
        try:
            server.wait_ready()
            yield server
        finally:
            server.terminate()


def test_a_call_past_the_workers_role_is_refused_under_polos_dev(iam_server: DevProcess) -> None:
    client = iam_server.client()
    within = asyncio.run(client.start_workflow("within-role", {})).run_id
    past = asyncio.run(client.start_workflow("past-role", {})).run_id

    def ended(run_id: str) -> dict[str, Any] | None:
        run: dict[str, Any] = get_json(iam_server, f"/api/v1/runs/{run_id}")
        return run if run["status"] in ("completed", "failed") else None

    assert (
        wait_until(lambda: ended(within), timeout=30, what="the run within its role")["status"] == "completed"
    )
    refused = wait_until(lambda: ended(past), timeout=30, what="the run past its role")
    assert refused["status"] == "failed"
    assert "AccessDeniedException" in refused["error"]["message"]
    assert "WorkerFunction is not authorized to perform: dynamodb:GetItem" in refused["error"]["message"]


def test_an_unknown_fault_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "--aws-faults", "iam,shufle", "--port", "0"]) == 2
    assert "polos dev: unknown AWS fault 'shufle'" in capsys.readouterr().err

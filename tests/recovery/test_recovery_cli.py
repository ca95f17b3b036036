"""``polos runs cancel|rerun``: one run by id, or every matching run of a workflow (``--workflow``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers.http_gateway import serve
from polos.api.keys import KeyStore
from polos.client import PolosClient
from polos.runtime.runs import get_run, list_runs

from infra.cli.main import main


@pytest.fixture
def api(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the API shares this process's stdout
    with serve() as url:
        monkeypatch.setenv("POLOS_API_URL", url)
        monkeypatch.setenv("POLOS_API_KEY", KeyStore().create("cli")[1])
        yield url


def statuses() -> dict[str, str]:
    return {run["run_id"]: run["status"] for run in list_runs(["create_user"], None, 100, None).runs}


def test_bulk_cancel_then_rerun_one_and_all(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = PolosClient()
    for name in ("a", "b", "c"):  # no worker runs here: the runs stay queued
        asyncio.run(client.start_workflow("create_user", {"name": name, "email": f"{name}@x.io"}))
    capsys.readouterr()
    assert main(["runs", "cancel", "--workflow", "create_user", "--status", "queued"]) == 0
    assert capsys.readouterr().out.strip() == "matched 3"
    assert set(statuses().values()) == {"cancelled"}
    source = next(iter(statuses()))
    assert main(["runs", "rerun", source]) == 0
    new_id, _, _, shown = capsys.readouterr().out.split()
    rerun = get_run(new_id)
    assert shown == source and rerun is not None and rerun["rerun_of"] == source
    assert main(["runs", "rerun", "--workflow", "create_user", "--status", "cancelled"]) == 0
    assert capsys.readouterr().out.strip() == "matched 3"
    assert list(statuses().values()).count("queued") == 4


def test_a_run_and_a_filter_together_are_refused(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "cancel"]) == 2
    assert "give RUN_ID or --workflow" in capsys.readouterr().err
    assert main(["runs", "rerun", "run_x", "--status", "failed"]) == 2
    assert "go with --workflow" in capsys.readouterr().err

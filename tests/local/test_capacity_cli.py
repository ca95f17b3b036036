"""``polos capacity``: the figures come from the requests ``polos dev`` metered for what actually ran."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.waiting import wait_until
from polos.aws import settings
from polos.client import PolosClient

from bench.stack import forget_worker_app
from infra.cli.main import main
from infra.local.devserver import DevServer
from infra.metering import capacity

TOPIC = "user/signup"  # the example app's signup workflow: one single-event run per event


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[DevServer, Path]]:
    saved = dict(os.environ)  # the dev server points this process at its moto server
    forget_worker_app()
    path = tmp_path / "capacity.json"
    dev = DevServer(port=0, ledger_file=path)
    dev.start()
    try:
        yield dev, path
    finally:
        dev.stop()
        os.environ.clear()
        os.environ.update(saved)
        settings.reset()


def test_polos_capacity_reports_the_sessions_topics_workflows_and_keys(
    ledger: tuple[DevServer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    dev, path = ledger
    client = PolosClient(base_url=dev.url, api_key=dev.api_key)
    events = [{"data": {"user_id": f"u{n}", "email": f"u{n}@example.com"}} for n in range(10)]
    asyncio.run(client.publish(TOPIC, events))

    def completed() -> bool:
        runs = client.request("GET", "/api/v1/runs?workflow_id=user-signup-handler&limit=100")["runs"]
        return len(runs) == 10 and all(run["status"] == "completed" for run in runs)

    wait_until(completed, timeout=60, what="the 10 signup runs to complete")
    dev.stop()  # the last save: everything metered is in the ledger

    every = capacity.Ledger.from_json(path.read_text()).loads()
    loads = {(load.workload, load.key_class): load for load in every}
    events_key = loads[(f"topic {TOPIC}", capacity.TOPIC_EVENTS)]
    assert events_key.write_units == pytest.approx(1.0)  # one 1-unit item per event on the topic's block
    assert events_key.ceiling == math.inf  # a block takes 100 events, then the next one does
    assert loads[(f"topic {TOPIC}", capacity.TOPIC_COUNTER)].write_units == pytest.approx(
        0.1
    )  # 1 per request
    # A single-event run has no index entry (its event lists it): nothing on the workflow's index keys.
    assert [load for load in every if load.key_class is capacity.WORKFLOW_INDEX] == []
    # A strongly consistent read of one of the key's 4 items per request: a quarter unit on each.
    (key,) = [load for load in every if load.key_class is capacity.API_KEY]
    assert key.read_units == pytest.approx(1 / capacity.REPLICAS)

    assert main(["capacity", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"topic {TOPIC}" in out and "PASS" in out
    assert "workflow user-signup-handler" not in out  # its runs write no key of the workflow's


def test_polos_capacity_without_a_session_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["capacity", "--file", str(tmp_path / "none.json")]) == 2
    assert "run `polos dev` first" in capsys.readouterr().err

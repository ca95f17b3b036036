"""Each run's price under ``polos dev``: the requests made for it, priced like the bench prices them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers.waiting import wait_until
from polos.api import costs
from polos.aws import settings
from polos.client import PolosClient

from bench.stack import forget_worker_app
from infra.cli.main import main
from infra.local.devserver import DevServer
from infra.metering import prices
from infra.metering.meter import Meter

TOPIC = "user/signup"  # the example app's signup workflow: one single-event run per event
WORKFLOW = "user-signup-handler"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    saved = dict(os.environ)  # the dev server points this process at its moto server
    forget_worker_app()
    server = DevServer(port=0, ledger_file=tmp_path / "capacity.json")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
        settings.reset()


def test_a_runs_price_under_polos_dev_equals_the_meters_for_the_same_requests(
    dev: DevServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A meter of the bench's kind beside polos dev's own, on the same clients.
    witness = Meter(shadow=boto3.client("dynamodb", endpoint_url=dev.aws_endpoint_url))
    witness.attach(settings.dynamodb(), settings.sqs())
    client = PolosClient(base_url=dev.url, api_key=dev.api_key)
    asyncio.run(client.publish(TOPIC, [{"data": {"user_id": "u1", "email": "u1@example.com"}}]))

    def completed() -> list[dict[str, object]]:
        runs = client.request("GET", f"/api/v1/runs?workflow_id={WORKFLOW}")["runs"]
        return runs if runs and runs[0]["status"] == "completed" else []

    (listed,) = wait_until(completed, timeout=60, what="the signup run to complete")
    run = client.request("GET", f"/api/v1/runs/{listed['run_id']}")
    witness.detach()
    made_for_run = [c for c in witness.calls if c.run is not None and c.run.run_id == run["run_id"]]
    dynamodb = sum(
        c.read_units * prices.DYNAMODB_READ_UNIT.usd + c.write_units * prices.DYNAMODB_WRITE_UNIT.usd
        for c in made_for_run
        if c.service == "dynamodb"
    )
    sqs = sum(c.billed_requests * prices.SQS_REQUEST.usd for c in made_for_run if c.service == "sqs")
    assert made_for_run and dynamodb > 0
    assert run["cost"]["requests"] == len(made_for_run)
    assert run["cost"]["usd"] == pytest.approx(dynamodb + sqs, rel=1e-9)
    assert run["cost"]["by_service"]["dynamodb"] == pytest.approx(dynamodb, rel=1e-9)
    assert listed["cost"] == run["cost"]  # the list page carries it too
    assert costs.workflow_cost(WORKFLOW) == {
        "usd_per_million_runs": pytest.approx((dynamodb + sqs) * prices.MILLION),
        "runs_metered": 1,
    }
    [shown] = client.request("GET", f"/api/v1/workflows?prefix={WORKFLOW}")["workflows"]
    assert shown["cost"] == costs.workflow_cost(WORKFLOW)  # the Workflows page shows it

    os.environ.update({"POLOS_API_URL": dev.url, "POLOS_API_KEY": dev.api_key})
    assert main(["runs", "--workflow", WORKFLOW]) == 0
    out = capsys.readouterr().out
    assert "COST (list prices)" in out and f"${dynamodb + sqs:.7f}" in out
    assert main(["run", run["run_id"]]) == 0
    assert f"cost      ${dynamodb + sqs:.7f} ({len(made_for_run)} requests" in capsys.readouterr().out


def test_outside_polos_dev_nothing_is_priced() -> None:
    assert costs.run_cost("run_x") is None
    assert costs.workflow_cost(WORKFLOW) is None

"""``polos dev`` over HTTP: batching windows, redelivery, dead-lettering, concurrency, keep-alive, SIGTERM."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import E2E_APP, MAX_ATTEMPTS, ROOT, DevProcess, get_json
from helpers.waiting import wait_until

from infra.local.faults.config import AwsFaults

pytestmark = pytest.mark.e2e


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _runs(server: DevProcess, workflow_id: str) -> list[dict[str, Any]]:
    return list(get_json(server, f"/api/v1/runs?workflow_id={workflow_id}&limit=100")["runs"])


def _run_of(server: DevProcess, workflow_id: str, event_id: str, status: str) -> dict[str, Any] | None:
    """The run of ``workflow_id`` triggered by ``event_id`` once it has ``status``."""
    runs = [run for run in _runs(server, workflow_id) if event_id in run["trigger"]["event_ids"]]
    return runs[0] if runs and runs[0]["status"] == status else None


def _finished(server: DevProcess, workflow_id: str, count: int) -> list[dict[str, Any]] | None:
    runs = _runs(server, workflow_id)
    done = [run for run in runs if run["status"] in ("completed", "failed")]
    return runs if len(done) >= count else None


def _publish(server: DevProcess, topic: str, datas: list[dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = asyncio.run(server.client().publish(topic, [{"data": d} for d in datas]))
    return answer


@pytest.fixture(scope="module")
def redelivered(e2e_server: DevProcess) -> dict[str, str]:
    """A flaky and a poison event, published together so that their redeliveries overlap in time."""
    flaky = _publish(e2e_server, "e2e/flaky", [{}])["events"][0]["id"]
    poison = _publish(e2e_server, "e2e/poison", [{}])["events"][0]["id"]
    return {"flaky": flaky, "poison": poison}


def test_batch_of_three_with_the_last_flushed_by_the_window(e2e_server: DevProcess) -> None:
    published = _publish(e2e_server, "e2e/batch", [{"i": i} for i in range(7)])
    sent_at = _time(published["created_at"])
    ids = {event["id"] for event in published["events"]}

    def all_batched() -> list[dict[str, Any]] | None:
        runs = [run for run in _runs(e2e_server, "e2e-batch") if run["status"] == "completed"]
        covered = [i for run in runs for i in run["trigger"]["event_ids"]]
        return runs if sorted(covered) == sorted(ids) else None

    runs = wait_until(all_batched, 20, "7 events in completed batch runs")
    assert all(run["trigger"]["type"] == "batch" and run["result"]["size"] <= 3 for run in runs)
    # A batch short of 3 events goes only when the 2 s window ends.
    partial = [run for run in runs if len(run["trigger"]["event_ids"]) < 3]
    assert partial and all(_time(run["created_at"]) - sent_at >= 1.5 for run in partial)
    if not os.environ.get("POLOS_AWS_FAULTS"):  # several pollers (make chaos) split the events their own way
        # One poller: the full batches go as soon as they hold 3 events; the seventh alone waits the window.
        assert sorted(len(run["trigger"]["event_ids"]) for run in runs) == [1, 3, 3]


def test_retried_run_skips_its_completed_step(e2e_server: DevProcess, redelivered: dict[str, str]) -> None:
    def run_of_flaky() -> dict[str, Any] | None:
        runs = [
            r for r in _runs(e2e_server, "e2e-flaky") if redelivered["flaky"] in r["trigger"]["event_ids"]
        ]
        return runs[0] if runs and runs[0]["status"] == "completed" else None

    summary = wait_until(run_of_flaky, 30, "the flaky run to complete on its second delivery")
    run = get_json(e2e_server, f"/api/v1/runs/{summary['run_id']}")
    assert run["attempts"] == 2
    steps = {step["key"]: step for step in run["steps"]}
    assert [step["key"] for step in run["steps"]] == ["first", "second"]
    assert steps["first"]["attempts"] == 1  # journaled on attempt 1, replayed (not called) on attempt 2
    assert run["result"]["first_at"] == steps["first"]["result"]["at"]
    assert run["result"]["attempt"] == 2


def test_poison_run_fails_after_max_attempts(e2e_server: DevProcess, redelivered: dict[str, str]) -> None:
    def run_of_poison() -> dict[str, Any] | None:
        runs = [
            r for r in _runs(e2e_server, "e2e-poison") if redelivered["poison"] in r["trigger"]["event_ids"]
        ]
        return runs[0] if runs and runs[0]["status"] == "failed" else None

    run = wait_until(run_of_poison, 40, "the poison run to fail for good")
    assert run["attempts"] == MAX_ATTEMPTS
    assert run["error"]["type"] == "ValueError"
    assert "always fails" in run["error"]["message"]

    # Its message is dead-lettered with the last failed execution; list it and redrive it over HTTP.
    def letters() -> list[dict[str, Any]]:
        return list(get_json(e2e_server, "/api/v1/workflows/e2e-poison/dead-letters")["dead_letters"])

    [letter] = wait_until(letters, 30, "the poison message in the dead-letter queue")
    assert (letter["run_id"], letter["event"]["id"]) == (run["run_id"], redelivered["poison"])
    moved = asyncio.run(e2e_server.client().redrive("e2e-poison"))
    # Under the `duplicates` fault (make chaos) a copy of a delivery may come after the run failed for good
    # and be dead-lettered too: a duplicate dead letter names the same run (polos.runtime.dead_letters).
    assert moved == 1 or (AwsFaults.resolve().duplicates is not None and moved > 1), moved

    def failed_again() -> dict[str, Any] | None:
        again = run_of_poison()
        return again if again and again["attempts"] == 2 * MAX_ATTEMPTS else None

    wait_until(failed_again, 40, "the redriven poison run (same run id) to fail again")


def test_fifty_concurrent_publishes_each_run_once(e2e_server: DevProcess) -> None:
    client = e2e_server.client()

    def publish(n: int) -> dict[str, Any]:
        answer: dict[str, Any] = client.request(
            "POST", "/api/v1/events/publish", {"topic": "e2e/load", "events": [{"data": {"n": n}}]}
        )
        return answer

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(publish, range(50)))
    published = {answer["events"][0]["id"] for answer in answers}
    assert len(published) == 50
    assert sorted(answer["sequence_ids"][0] for answer in answers) == list(range(1, 51))

    runs = wait_until(lambda: _finished(e2e_server, "e2e-count", 50), 60, "50 runs of e2e-count")
    assert len(runs) == 50
    assert all(run["status"] == "completed" and run["attempts"] == 1 for run in runs)
    assert sorted(run["result"]["n"] for run in runs) == list(range(50))
    assert {run["trigger"]["event_ids"][0] for run in runs} == published


def test_http_keep_alive_auth_and_routes(e2e_server: DevProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", e2e_server.port, timeout=10)
    auth = {"Authorization": f"Bearer {e2e_server.api_key}"}
    try:
        for _ in range(3):  # one connection, several requests
            connection.request("GET", "/api/v1/runs?limit=1", headers=auth)
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("apigw-requestid")
            json.loads(response.read())
        connection.request("GET", "/api/v1/runs", headers={"Authorization": "Bearer pk_wrong"})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["error_type"]) == (401, "unauthorized")
        connection.request("POST", "/api/v1/events/publish", body=b"{")  # no Authorization at all
        response = connection.getresponse()
        missing = "missing Authorization header; send 'Authorization: Bearer <api key>'"
        assert (response.status, json.loads(response.read())) == (
            401,
            {"error": missing, "error_type": "unauthorized"},
        )
        connection.request("GET", "/api/v1/nowhere", headers=auth)
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["error_type"]) == (404, "not_found")
    finally:
        connection.close()


def test_sigterm_stops_within_ten_seconds(tmp_path: Path) -> None:
    with (tmp_path / "dev.log").open("w") as log:
        server = DevProcess(log, "--app", str(E2E_APP.relative_to(ROOT)))
        try:
            server.wait_ready()
            published = _publish(server, "e2e/slow", [{"seconds": 3}])
            event_id = published["events"][0]["id"]

            def running() -> bool:
                runs = _runs(server, "e2e-slow")
                return (
                    bool(runs)
                    and event_id in runs[0]["trigger"]["event_ids"]
                    and runs[0]["status"] == "running"
                )

            wait_until(running, 20, "the slow run to be running")
            started = time.monotonic()
            status = server.terminate(timeout=10)
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
            output = server.log()
    assert status == 0, f"polos dev did not stop within 10 s on SIGTERM:\n{output}"
    assert elapsed < 10
    assert "Stopped." in output  # the in-flight invocation finished before the pollers stopped
    assert "run completed" in output

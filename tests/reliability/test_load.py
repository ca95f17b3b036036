"""Load: events to a topic with 3 subscribers (one batched) through the local stack (``polos dev``'s
server: moto server, HTTP gateway, event source mappings) from concurrent publishers over HTTP. Afterwards
every delivery is accounted for: each event stored once, each single-event workflow ran it in exactly one
run, the batched workflow in exactly one batch; nothing lost, no duplicate run, no step run twice.
``POLOS_SOAK=1`` sends 10,000 events (30,000 deliveries)."""

from __future__ import annotations

import os
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
import reliability_load_app as load_app
from helpers.waiting import wait_until
from polos.aws import settings
from polos.client import PolosClient
from reliability_support import SOAK

from bench.stack import forget_worker_app
from infra.local.devserver import DevServer
from infra.local.faults.config import AwsFaults
from infra.local.stack import StackOptions

EVENTS = int(os.environ.get("POLOS_LOAD_EVENTS") or (10_000 if SOAK else 150))  # e.g. 1000 under throttle=0.1
PUBLISHERS = 4
PER_REQUEST = 10
RETRIES = 5
pytestmark = pytest.mark.timeout(7200 if SOAK else 600)


@pytest.fixture
def server() -> Iterator[DevServer]:
    saved = dict(os.environ)  # the dev server points this process at its moto server
    load_app.EFFECTS.clear()
    forget_worker_app()
    options = StackOptions(max_attempts=5, aws_faults=AwsFaults.resolve())  # make chaos: the faults
    dev = DevServer(app_target=load_app.__name__, port=0, options=options)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()
        os.environ.clear()
        os.environ.update(saved)
        settings.reset()


def _pages(client: PolosClient, path: str, query: dict[str, Any], items: str, cursor: str) -> list[Any]:
    found: list[Any] = []
    while True:
        page = client.request("GET", f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}")
        found += page[items]
        if page[cursor] is None:
            return found
        query = {**query, cursor.removeprefix("next_"): page[cursor]}


def _depth(sqs: Any, queue: str) -> int:
    """Messages on a queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
    return sum(int(value) for value in counts.values())


def test_every_delivery_accounted_for(server: DevServer, capsys: pytest.CaptureFixture[str]) -> None:
    client = PolosClient(base_url=server.url, api_key=server.api_key, timeout=60)
    started = time.monotonic()
    retried: list[int] = []

    def publish(first: int) -> list[str]:
        """One request; a client that timed out retries with its Idempotency-Key, as clients should."""
        events = [{"data": {"n": n}} for n in range(first, min(EVENTS, first + PER_REQUEST))]
        body = {"topic": load_app.TOPIC, "events": events}
        for attempt in range(RETRIES):
            try:
                answer = client.request(
                    "POST", "/api/v1/events/publish", body, headers={"Idempotency-Key": f"load-{first}"}
                )
                return [event["id"] for event in answer["events"]]
            except (TimeoutError, urllib.error.URLError):
                if attempt == RETRIES - 1:
                    raise
                retried.append(first)
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(PUBLISHERS) as pool:
        published = [e for ids in pool.map(publish, range(0, EVENTS, PER_REQUEST)) for e in ids]
    assert len(published) == len(set(published)) == EVENTS

    expected = 3 * EVENTS
    # The runs happen on the stack's own threads. A step's effect is recorded before its run is finished,
    # so wait for what is asserted below: every run finished and every queue empty, not the effects.
    wait = 6000 if SOAK else max(400, EVENTS)
    wait_until(lambda: load_app.delivered() >= expected, wait, f"{expected} deliveries", interval=0.2)
    assert server.stack is not None
    sqs = boto3.session.Session().client("sqs")
    queues = [queue for url in server.stack.urls.values() for queue in (url, url + "-dlq")]

    def settled() -> dict[str, list[dict[str, Any]]] | None:
        if any(_depth(sqs, queue) for queue in queues):
            return None
        runs = {
            workflow_id: _pages(
                client, "/api/v1/runs", {"workflow_id": workflow_id, "limit": 100}, "runs", "next_cursor"
            )
            for workflow_id in (*load_app.SINGLE, load_app.BATCHED)
        }
        finished = all(run["status"] in ("completed", "failed") for found in runs.values() for run in found)
        return runs if finished else None

    listed = wait_until(settled, wait, "every run finished and every queue empty", interval=0.2)
    seconds = time.monotonic() - started

    effects = dict(load_app.EFFECTS)
    assert set(effects.values()) == {1}, "a step ran twice"
    for workflow_id in load_app.SINGLE:
        handled = Counter(ids[0] for (wf, _, ids) in effects if wf == workflow_id)
        assert handled == Counter(published), f"{workflow_id}: each event in exactly one run"
        runs = Counter(run for (wf, run, _) in effects if wf == workflow_id)
        assert len(runs) == EVENTS and set(runs.values()) == {1}, f"{workflow_id}: one run per event"
    batched = Counter(e for (wf, _, ids) in effects if wf == load_app.BATCHED for e in ids)
    assert batched == Counter(published), "each event in exactly one batch"
    batch_runs = [ids for (wf, _, ids) in effects if wf == load_app.BATCHED]
    assert all(1 <= len(ids) <= 10 for ids in batch_runs)

    stored = _pages(
        client, "/api/v1/events", {"topic": load_app.TOPIC, "limit": 1000}, "events", "next_after_sequence_id"
    )
    assert Counter(event["id"] for event in stored) == Counter(published), "each event stored once"
    sequence_ids = [event["sequence_id"] for event in stored]
    assert sequence_ids == sorted(set(sequence_ids)), "sequence ids strictly increasing"
    for workflow_id, runs in listed.items():
        assert {run["status"] for run in runs} == {"completed"}, workflow_id
        assert len(runs) == (EVENTS if workflow_id in load_app.SINGLE else len(batch_runs)), workflow_id
    with capsys.disabled():
        print(
            f"\nload: {EVENTS} events x 3 subscribers = {expected} deliveries accounted for, 0 lost, "
            f"0 duplicate runs ({len(batch_runs)} batch runs), {PUBLISHERS} publishers "
            f"({len(retried)} requests retried after a client timeout), {seconds:.0f} s"
        )

"""Throughput and the limit: events/s from publish to completed run through the local stack, next to the
same AWS requests issued directly with boto3 against the same moto server, in the same run.

1. ``polos dev``'s stack (``infra.local.devserver.DevServer``: moto server, HTTP gateway, event source
   mappings) runs :mod:`bench.throughput_app` (3 subscribed 1-step workflows) in this process; concurrent
   publishers send ``events`` events over HTTP; the clock stops when every queue is empty (a message is
   deleted only once its run is done with). Every AWS request the stack made is recorded.
2. The limit: the recorded requests, with their parameters, are replayed with boto3 against fresh copies of
   the tables and queues on the same moto server, each recording thread's requests in order on a thread of
   its own, all at once. Receives that found nothing (idle polls) are left out and long polls do not wait;
   requests that fail in replay (a receipt handle of the first run, a condition) count: moto answered them.
   Both choices can only make the limit faster, i.e. the ratio harder to reach.
3. With history: the stack's tables are grown to ``history`` stored events (each stored event, run and step
   item copied under new keys, with BatchWriteItem, not metered), then the same number of
   events is published again and timed: the rate must not fall as the tables grow.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from polos.aws import settings
from polos.aws.chunking import write_all
from polos.client import PolosClient

from bench import throughput_app
from bench.stack import forget_worker_app
from bench.workload import sample_event
from infra.local.devserver import DevServer
from infra.local.resources import LocalNames, create_resources
from infra.local.stack import StackOptions
from infra.metering.meter import Call, Meter
from infra.model import DEFAULT_QUEUE_NAME_PREFIX, WORKER_TIMEOUT_SECONDS, build_model

REPLAY_PREFIX = "replay-"
# The watcher asks moto for 3 queue depths per poll; every 50 ms that was as many requests as the stack made.
POLL_SECONDS = 0.25
HISTORY_EVENTS = 10_000
BATCH_WRITE = 25  # BatchWriteItem's limit
HISTORY_WRITERS = 4


@dataclass(frozen=True)
class Throughput:
    events: int
    publishers: int
    per_request: int
    seconds: float
    aws_calls: int
    replay_threads: int
    replay_seconds: float
    history: int = 0  # stored events before the second, timed run
    history_seconds: float = 0.0  # that run's time

    @property
    def history_events_per_second(self) -> float:
        return self.events / self.history_seconds if self.history_seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def limit_events_per_second(self) -> float:
        return self.events / self.replay_seconds


def _publish_all(url: str, api_key: str, events: int, publishers: int, per_request: int) -> None:
    client = PolosClient(base_url=url, api_key=api_key)
    batches = [
        list(range(start, min(events, start + per_request))) for start in range(0, events, per_request)
    ]

    def send(numbers: list[int]) -> None:
        client.request(
            "POST",
            "/api/v1/events/publish",
            {"topic": throughput_app.TOPIC, "events": [sample_event(n) for n in numbers]},
        )

    with ThreadPoolExecutor(publishers) as pool:
        list(pool.map(send, batches))


def _queues_empty(sqs: Any, urls: list[str]) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return all(
        not any(
            int(v)
            for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].values()
        )
        for url in urls
    )


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still not done after {timeout} s")
        time.sleep(POLL_SECONDS)


def _replay(calls: list[Call], endpoint: str) -> tuple[int, float]:
    """Issue ``calls`` again on fresh resources; (threads used, seconds taken)."""
    session = boto3.session.Session()
    config = Config(retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=100)
    clients = {
        name: session.client(name, endpoint_url=endpoint, config=config) for name in ("dynamodb", "sqs")
    }
    model = build_model(throughput_app.app())
    names = LocalNames(REPLAY_PREFIX, f"{endpoint}/123456789012/{REPLAY_PREFIX}", "/dev/null")
    create_resources(model, names, clients["dynamodb"], clients["sqs"])  # type: ignore[arg-type]
    streams: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
    for call in calls:
        text = json.dumps(call.params).replace(DEFAULT_QUEUE_NAME_PREFIX, REPLAY_PREFIX)
        params = json.loads(text)
        if call.operation == "ReceiveMessage":
            params["WaitTimeSeconds"] = 0
        method = "".join("_" + c.lower() if c.isupper() else c for c in call.operation).lstrip("_")
        streams.setdefault(call.thread, []).append((call.service, method, params))

    def run(stream: list[tuple[str, str, dict[str, Any]]]) -> None:
        for service, method, params in stream:
            with contextlib.suppress(ClientError):  # answered all the same
                getattr(clients[service], method)(**params)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(stream,)) for stream in streams.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(threads), time.perf_counter() - started


def _grow_history(client: Any, table_names: list[str], stored_events: int, target_events: int) -> int:
    """Copy every item of ``table_names`` under new keys until they hold ``target_events`` events' worth
    (events, runs, steps, counters alike), with ``BatchWriteItem`` from a few threads (moto serves in a
    process of its own: its tables are only reachable over HTTP). Returns the events now stored."""
    copies = max(0, -(-target_events // max(1, stored_events)) - 1)  # at least target_events in all
    batches: list[tuple[str, list[Any]]] = []
    for name in table_names:
        originals = [
            item for page in client.get_paginator("scan").paginate(TableName=name) for item in page["Items"]
        ]
        requests = [
            {"PutRequest": {"Item": {**item, "pk": {"S": f"{item['pk']['S']}~history{copy}"}}}}
            for copy in range(copies)
            for item in originals
        ]
        batches += [(name, requests[i : i + BATCH_WRITE]) for i in range(0, len(requests), BATCH_WRITE)]
    with ThreadPoolExecutor(HISTORY_WRITERS) as pool:
        list(pool.map(lambda batch: write_all(client, *batch), batches))
    return stored_events * (copies + 1)


def _timed_run(server: DevServer, watcher: Any, events: int, publishers: int, per_request: int) -> float:
    assert server.stack is not None
    urls = list(server.stack.urls.values())
    started = time.perf_counter()
    _publish_all(server.url, server.api_key, events, publishers, per_request)
    _wait(lambda: _queues_empty(watcher, urls), timeout=max(600.0, events * 2.0))
    return time.perf_counter() - started


def measure(
    events: int = 600, publishers: int = 4, per_request: int = 10, history: int = HISTORY_EVENTS
) -> Throughput:
    """Run the stack, then the replay, then the stack again with ``history`` events stored (0: skip it);
    all against one moto server in this process."""
    saved = dict(os.environ)  # the dev server points the process at its moto server
    forget_worker_app()
    # Leases as long as the cloud's worker timeout (the template's): a slow machine never lets one lapse.
    options = StackOptions(visibility_timeout=WORKER_TIMEOUT_SECONDS)
    server = DevServer(app_target=throughput_app.__name__, port=0, options=options)
    server.start()
    try:
        assert server.stack is not None
        watcher = boto3.session.Session().client("sqs")  # not metered: watching is not the stack's work
        meter = Meter()
        meter.attach(settings.dynamodb(), settings.sqs())
        seconds = _timed_run(server, watcher, events, publishers, per_request)
        meter.detach()
        calls = [call for call in meter.calls if not call.empty]
        endpoint = watcher.meta.endpoint_url
        threads, replay_seconds = _replay(calls, endpoint)
        stored, history_seconds = events, 0.0
        if history:
            stack = server.stack
            keys = settings.ENV_KEYS_TABLE
            tables = [stack.names.table(t) for t in stack.model.tables if t.env_var != keys]
            dynamodb = boto3.session.Session().client(
                "dynamodb", config=Config(max_pool_connections=HISTORY_WRITERS)
            )
            stored = _grow_history(dynamodb, tables, events, history)
            history_seconds = _timed_run(server, watcher, events, publishers, per_request)
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
        settings.reset()
    return Throughput(
        events, publishers, per_request, seconds, len(calls), threads, replay_seconds, stored, history_seconds
    )

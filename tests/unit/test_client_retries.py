"""``PolosClient`` retries overload (429/503 with ``Retry-After``, connection errors, timeouts) with backoff,
bounded, and sends one ``Idempotency-Key`` of its own per publish or run call, the same on each retry."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from polos import client as client_module
from polos.client import PolosClient, retry_after_seconds
from polos.errors import PolosAPIError

KEY = "pk_" + "1" * 16 + "_" + "2" * 64
THROTTLED = {"error": "the service is overloaded", "error_type": "throttled"}


@contextmanager
def server(answers: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Answers each request with the next ``(status, headers)`` (then 200); records every request."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(self.rfile.read(length)) if length else None,
                }
            )
            status, headers = answers.pop(0) if answers else (200, {})
            ok = {"run_id": "r1", "workflow_id": "wf", "sequence_ids": [1], "runs": []}
            body = json.dumps(ok if status < 300 else THROTTLED).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits between attempts, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(client_module, "_pause", waited.append)
    return waited


def test_publish_retries_503_honouring_retry_after_under_one_key(pauses: list[float]) -> None:
    answers = [(503, {"Retry-After": "3"}), (429, {"Retry-After": "2"})]
    with server(answers) as (url, seen):
        answer = asyncio.run(PolosClient(url, KEY).publish("t", [{"data": {}}]))
    assert answer["sequence_ids"] == [1]
    assert len(seen) == 3
    keys = {request["headers"].get("idempotency-key") for request in seen}
    assert len(keys) == 1 and None not in keys
    assert pauses[0] >= 3 and pauses[1] >= 2  # never sooner than the server asked


def test_each_call_has_its_own_key_and_a_given_key_is_kept(pauses: list[float]) -> None:
    with server([]) as (url, seen):
        client = PolosClient(url, KEY)
        asyncio.run(client.publish("t", [{"data": {}}]))
        asyncio.run(client.publish("t", [{"data": {}}]))
        asyncio.run(client.start_workflow("wf", {}))
        asyncio.run(client.publish("t", [{"data": {}}], idempotency_key="mine"))
    keys = [request["headers"]["idempotency-key"] for request in seen]
    assert len(set(keys[:3])) == 3 and keys[3] == "mine"


def test_start_workflow_retries_503_under_one_key(pauses: list[float]) -> None:
    with server([(503, {"Retry-After": "1"})]) as (url, seen):
        handle = asyncio.run(PolosClient(url, KEY).start_workflow("wf", {"a": 1}))
    assert handle.run_id == "r1"
    assert len(seen) == 2 and seen[0]["headers"]["idempotency-key"] == seen[1]["headers"]["idempotency-key"]


def test_retries_are_bounded_by_max_attempts(pauses: list[float]) -> None:
    with server([(503, {})] * 10) as (url, seen), pytest.raises(PolosAPIError) as raised:
        asyncio.run(PolosClient(url, KEY, max_attempts=3).publish("t", [{"data": {}}]))
    assert raised.value.status == 503 and raised.value.error_type == "throttled"
    assert len(seen) == 3 and len(pauses) == 2


def test_retries_are_bounded_by_max_retry_seconds(pauses: list[float]) -> None:
    """A wait past the total budget is not waited: the 503 is raised at once."""
    with server([(503, {"Retry-After": "30"})] * 3) as (url, seen), pytest.raises(PolosAPIError):
        asyncio.run(PolosClient(url, KEY, max_retry_seconds=10).publish("t", [{"data": {}}]))
    assert len(seen) == 1 and pauses == []


def test_other_errors_are_not_retried(pauses: list[float]) -> None:
    with server([(500, {}), (400, {})]) as (url, seen):
        client = PolosClient(url, KEY)
        for _ in range(2):
            with pytest.raises(PolosAPIError):
                asyncio.run(client.publish("t", [{"data": {}}]))
    assert len(seen) == 2 and pauses == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_errors_are_retried_when_safe_and_not_otherwise(pauses: list[float]) -> None:
    """Nothing listens: a GET and a keyed publish are tried max_attempts times; a cancel (no key: its
    answer might have been lost after it was applied) once."""
    client = PolosClient(f"http://127.0.0.1:{free_port()}", KEY, max_attempts=3)
    with pytest.raises(OSError):
        asyncio.run(client.get_run("r1"))
    assert len(pauses) == 2
    with pytest.raises(OSError):
        asyncio.run(client.publish("t", [{"data": {}}]))
    assert len(pauses) == 4
    with pytest.raises(OSError):
        asyncio.run(client.cancel("r1"))
    assert len(pauses) == 4


def test_a_timeout_is_retried(pauses: list[float]) -> None:
    """A server that accepts and never answers: each attempt times out, and is tried again."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(OSError):
            asyncio.run(PolosClient(url, KEY, timeout=0.2, max_attempts=2).list_runs())
    assert len(pauses) == 1


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a past date: at once
    with pytest.raises(ValueError, match="max_attempts"):
        PolosClient("http://x", KEY, max_attempts=0)

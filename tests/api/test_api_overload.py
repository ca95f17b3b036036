"""Overload is answered, not failed: a throttle or a timeout of the API's own AWS calls is ``503 throttled``
with ``Retry-After`` on every route, the request stores nothing it did not finish, and a publish retried
with its ``Idempotency-Key`` after a ``503`` is stored once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from helpers.apigw import ApiAnswer, gateway_call, http_event
from helpers.aws_state import drain, snapshot
from helpers.http_gateway import serve
from helpers.throttle import throttle
from polos.api.keys import KeyStore
from polos.aws import settings
from polos.aws.overload import RETRY_AFTER_SECONDS
from polos.aws.retries import MAX_ATTEMPTS
from polos.client import PolosClient

WORKFLOW = "create_user"
TOPIC = "order/created"  # two subscribers: immediate-handler and batched-handler


@pytest.fixture
def api_key(stack: dict[str, str]) -> str:
    return KeyStore().create("tests")[1]


def call(api_key: str, method: str, path: str, **kwargs: Any) -> ApiAnswer:
    return gateway_call(http_event(method, path, api_key=api_key, **kwargs))


def not_the_keys_table(params: dict[str, Any]) -> bool:
    """Every AWS call but the key check's (which has a test of its own)."""
    return params.get("TableName") != settings.get_settings().keys_table


def started_run(api_key: str) -> str:
    answer = call(api_key, "POST", f"/api/v1/workflows/{WORKFLOW}/run", body={"payload": {"email": "a@b"}})
    assert answer.status == 202, answer.json
    return str(answer.json["run_id"])


ROUTES: list[tuple[str, Callable[[str], tuple[str, str, dict[str, Any]]]]] = [
    (
        "publish",
        lambda run: ("POST", "/api/v1/events/publish", {"body": {"topic": TOPIC, "events": [{"data": {}}]}}),
    ),
    ("list events", lambda run: ("GET", "/api/v1/events", {"query": {"topic": TOPIC}})),
    ("run", lambda run: ("POST", f"/api/v1/workflows/{WORKFLOW}/run", {"body": {"payload": {"x": 1}}})),
    ("get run", lambda run: ("GET", f"/api/v1/runs/{run}", {})),
    ("list runs", lambda run: ("GET", "/api/v1/runs", {"query": {"workflow_id": WORKFLOW}})),
    ("get execution", lambda run: ("GET", f"/api/v1/executions/{run}", {})),
    ("cancel", lambda run: ("POST", f"/api/v1/runs/{run}/cancel", {})),
    ("resume", lambda run: ("POST", f"/api/v1/runs/{run}/resume", {"body": {"step_key": "s", "data": {}}})),
    ("dead letters", lambda run: ("GET", f"/api/v1/workflows/{WORKFLOW}/dead-letters", {})),
    ("redrive", lambda run: ("POST", f"/api/v1/workflows/{WORKFLOW}/dead-letters/redrive", {})),
]


def assert_throttled(answer: ApiAnswer) -> None:
    assert answer.status == 503, answer.json
    assert answer.headers.get("Retry-After") == str(RETRY_AFTER_SECONDS)
    assert answer.json["error_type"] == "throttled"
    assert "overloaded" in answer.json["error"]


@pytest.mark.parametrize(("route", "request_of"), ROUTES, ids=[name for name, _ in ROUTES])
def test_a_throttled_route_answers_503_with_retry_after_and_stores_nothing(
    api_key: str, route: str, request_of: Callable[[str], tuple[str, str, dict[str, Any]]]
) -> None:
    method, path, kwargs = request_of(started_run(api_key))
    before = snapshot()
    with throttle(when=not_the_keys_table) as throttled:
        answer = call(api_key, method, path, **kwargs)
    assert throttled.total >= 1
    assert_throttled(answer)
    assert snapshot() == before


@pytest.mark.parametrize(("route", "request_of"), ROUTES[:4], ids=[name for name, _ in ROUTES[:4]])
def test_every_request_throttled_is_retried_within_the_budget_then_answered_503(
    api_key: str, route: str, request_of: Callable[[str], tuple[str, str, dict[str, Any]]]
) -> None:
    """Throttled HTTP requests go through botocore's retries (polos.aws.retries) before the 503."""
    method, path, kwargs = request_of(started_run(api_key))
    before = snapshot()
    with throttle(when=not_the_keys_table, per="request") as throttled:
        answer = call(api_key, method, path, **kwargs)
    assert max(throttled.seen.values()) == MAX_ATTEMPTS
    assert_throttled(answer)
    assert snapshot() == before


def test_a_throttled_key_check_answers_503(api_key: str) -> None:
    with throttle({"GetItem"}) as throttled:
        answer = call(api_key, "GET", "/api/v1/runs")
    assert throttled.seen["dynamodb.GetItem"] == 1
    assert_throttled(answer)


def test_a_read_timeout_answers_503(api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ReadTimeoutError

    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client = settings.dynamodb()
    client.meta.events.register_first("before-send.dynamodb.Query", time_out)
    try:
        answer = call(api_key, "GET", "/api/v1/runs", query={"workflow_id": WORKFLOW})
    finally:
        client.meta.events.unregister("before-send.dynamodb.Query", time_out)
    assert_throttled(answer)
    assert "timeout" in answer.json["error"]


def stored_events(topic: str) -> dict[str, dict[str, Any]]:
    """Every event item of ``topic`` in the events table (gaps left out): id → data."""
    from polos.publish.events import GAP_ATTRIBUTE, decode_event, topic_of

    pages = settings.dynamodb().get_paginator("scan").paginate(TableName=settings.get_settings().events_table)
    items = [
        item
        for page in pages
        for item in page["Items"]
        if item["pk"]["S"].startswith("topic#")
        and topic_of(item["pk"]["S"]) == topic
        and GAP_ATTRIBUTE not in item
    ]
    return {event.id: event.data for event in map(decode_event, items)}


def on_table(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda params: params.get("TableName") == getattr(settings.get_settings(), name)


def key_record(params: dict[str, Any]) -> str | None:
    """The status an ``Idempotency-Key`` record is written with (``None``: another write)."""
    if not on_table("idempotency_table")(params):
        return None
    return str(params.get("Item", {}).get("status", {}).get("S"))


# (the call the first request stops at, the operation, which of its calls, client-given event ids?)
MIDWAY: list[tuple[str, str, Callable[[dict[str, Any]], bool] | None, bool]] = [
    ("sequence reservation", "UpdateItem", on_table("events_table"), False),
    ("key claim", "PutItem", lambda params: key_record(params) == "pending", False),
    ("event writes", "BatchWriteItem", None, False),
    ("client-id event writes", "TransactWriteItems", None, True),
    ("fan-out", "SendMessageBatch", None, False),
]


@pytest.mark.parametrize(("stop", "operation", "when", "ids"), MIDWAY, ids=[m[0] for m in MIDWAY])
def test_a_publish_throttled_midway_and_retried_with_its_key_is_stored_once(
    api_key: str,
    stack: dict[str, str],
    stop: str,
    operation: str,
    when: Callable[[dict[str, Any]], bool] | None,
    ids: bool,
) -> None:
    """The first request stops at one of its calls; its retry with the same key finishes it: each event
    stored once and sent to each subscriber (at least once: a retry after the fan-out sends again, and
    the worker turns the duplicate away by run id)."""
    events = [{"data": {"n": n}, **({"id": f"client-{n}"} if ids else {})} for n in range(3)]
    body = {"topic": TOPIC, "events": events}
    headers = {"Idempotency-Key": f"retry-{operation}"}
    with throttle({operation}, when=when) as throttled:
        first = call(api_key, "POST", "/api/v1/events/publish", body=body, headers=headers)
    assert throttled.total >= 1
    assert_throttled(first)
    second = call(api_key, "POST", "/api/v1/events/publish", body=body, headers=headers)
    assert second.status == 200, second.json
    third = call(api_key, "POST", "/api/v1/events/publish", body=body, headers=headers)
    assert third.json == second.json
    stored = stored_events(TOPIC)
    assert sorted(event["n"] for event in stored.values()) == [0, 1, 2]
    assert sorted(stored) == sorted(event["id"] for event in second.json["events"])
    for workflow in ("immediate-handler", "batched-handler"):
        bodies = drain(stack[workflow])
        assert {json.loads(body)["event"]["id"] for body in bodies} == set(stored)


@pytest.mark.parametrize("stop", ["BatchWriteItem", "SendMessageBatch"])
def test_polos_client_retries_a_throttled_publish_which_is_stored_once(
    api_key: str, stack: dict[str, str], stop: str
) -> None:
    """The first request is answered 503 after it stored (or sent) part of its work; the client retries
    under its own Idempotency-Key and returns normally; the events are stored once."""
    with serve() as url, throttle({stop}, times=1) as throttled:
        answer = asyncio.run(PolosClient(url, api_key).publish(TOPIC, [{"data": {"n": n}} for n in range(2)]))
    assert throttled.total == 1
    stored = stored_events(TOPIC)
    assert sorted(stored) == sorted(event["id"] for event in answer["events"])
    assert sorted(event["n"] for event in stored.values()) == [0, 1]

"""Text SQS cannot carry: lone surrogates are refused naming the field; U+FFFE/U+FFFF travel exactly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.apigw import gateway_call, http_event
from helpers.aws_state import snapshot
from helpers.sqs_rules import sqs_rules
from helpers.stack import provision
from helpers.worker import Pump
from polos import EventPayload, WorkflowContext, workflow
from polos.api.keys import KeyStore
from polos.app import App
from polos.aws import settings
from polos.errors import NonRetryableError
from polos.publish.events import EventStore
from polos.publish.messages import MAX_MESSAGE_BYTES
from polos.publish.publishing import MAX_DATA_BYTES
from polos.runtime.journal import Journal
from polos.runtime.steps import StepRunner

from infra.model import build_model
from infra.template import render_template

TOPIC = "text/check"
RECEIVED: list[dict[str, Any]] = []


@workflow(id="text-sink", trigger_on_event=TOPIC)
async def text_sink(ctx: WorkflowContext, payload: EventPayload) -> None:
    RECEIVED.append(payload.data)


TEXT_APP = App("text", [text_sink])


@pytest.fixture
def api_key(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    RECEIVED.clear()
    provision(TEXT_APP, tmp_path, monkeypatch)
    return KeyStore().create("tests")[1]


def post_raw(api_key: str, path: str, text: str) -> Any:
    return gateway_call(http_event("POST", path, raw_body=text, api_key=api_key))


# JSON text as a client sends it: "\ud800" is a valid JSON escape that decodes to a lone surrogate.
LONE = '"\\ud800"'
CASES: list[tuple[str, str, str]] = [
    (
        "data value",
        '{"topic": "text/check", "events": [{"data": {"x": @@}}]}'.replace("@@", LONE),
        "events[0].data",
    ),
    (
        "data key",
        '{"topic": "text/check", "events": [{"data": {@@: 1}}]}'.replace("@@", LONE),
        "events[0].data",
    ),
    (
        "second event",
        '{"topic": "text/check", "events": [{"data": {}}, {"data": {"x": ["ok", @@]}}]}'.replace("@@", LONE),
        "events[1].data",
    ),
    (
        "event type",
        '{"topic": "text/check", "events": [{"data": {}, "event_type": @@}]}'.replace("@@", LONE),
        "events[0].event_type",
    ),
]


@pytest.mark.parametrize(
    ("text", "field"), [(text, field) for _, text, field in CASES], ids=[c[0] for c in CASES]
)
def test_a_lone_surrogate_is_a_400_naming_the_field_and_stores_nothing(
    api_key: str, text: str, field: str
) -> None:
    before = snapshot()
    for headers in ({}, {"Idempotency-Key": "k-1"}):
        answer = gateway_call(
            http_event("POST", "/api/v1/events/publish", raw_body=text, api_key=api_key, headers=headers)
        )
        assert answer.status == 400, answer.json
        assert answer.json["error_type"] == "validation_error"
        assert answer.json["error"].startswith(f"{field} contains a lone surrogate")
    assert snapshot() == before


def test_an_invoke_payload_with_a_lone_surrogate_is_a_400_naming_payload(api_key: str) -> None:
    before = snapshot()
    answer = post_raw(
        api_key, "/api/v1/workflows/text-sink/run", '{"payload": {"name": @@}}'.replace("@@", LONE)
    )
    assert answer.status == 400, answer.json
    assert answer.json["error_type"] == "validation_error"
    assert answer.json["error"].startswith("payload contains a lone surrogate U+D800")
    assert snapshot() == before


def test_publish_event_step_refuses_a_lone_surrogate_clearly(api_key: str) -> None:
    runner = StepRunner(run_id="run-text", journal=Journal(), steps=[], lease_until=time.time() + 900)
    with pytest.raises(NonRetryableError, match=r"events\[0\]\.data contains a lone surrogate U\+DFFF"):
        asyncio.run(runner.publish_event("bad", TOPIC, {"x": "a\udfffb"}))
    assert EventStore().list_topic(TOPIC, 0, 10).events == []


# Valid Unicode, but not all of it in SQS's character set (U+FFFE, U+FFFF, C0 controls).
AWKWARD = {
    "nonchars": "\ufffe\uffff",
    "controls": "\x00\x01\x08\x0b\x0c\x1f\x7f",
    "astral": "\U0001f600\U0010ffff",
    "mixed": "é\u2028\u2029\ud7ff\ue000\ufffd",
    "\uffffkey": ["\ufffe", {"\x00": "\uffff"}],
}


def test_text_outside_sqs_characters_reaches_the_worker_exactly(api_key: str, tmp_path: Path) -> None:
    urls = provision_urls()
    body = json.dumps({"topic": TOPIC, "events": [{"data": AWKWARD}]})  # ASCII JSON with \u escapes
    with sqs_rules() as sizes:
        answer = post_raw(api_key, "/api/v1/events/publish", body)
        assert answer.status == 200, answer.json
        Pump(TEXT_APP, urls).drain()
    assert RECEIVED == [AWKWARD]
    assert EventStore().list_topic(TOPIC, 0, 10).events[0].data == AWKWARD
    assert len(sizes) == 1


def provision_urls() -> dict[str, str]:
    """The queue URLs of the already provisioned text app."""
    return {"text-sink": settings.get_settings().queue_url("text-sink")}


WORST: list[tuple[str, Callable[[int], str]]] = [
    ("2-byte characters", lambda n: "é" * (n // 2)),
    ("4-byte characters", lambda n: "\U0001f600" * (n // 4)),
    ("U+FFFF", lambda n: "\uffff" * (n // 3)),
    ("quotes", lambda n: '"' * (n // 2)),
]


@pytest.mark.parametrize("make", [make for _, make in WORST], ids=[name for name, _ in WORST])
def test_a_maximal_event_of_any_text_fits_one_sqs_message(
    api_key: str, tmp_path: Path, make: Callable[[int], str]
) -> None:
    text = make(MAX_DATA_BYTES - 64)
    data = {"t": text}
    while len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_DATA_BYTES:
        text = text[:-1]
        data = {"t": text}
    urls = provision_urls()
    with sqs_rules() as sizes:
        answer = post_raw(
            api_key, "/api/v1/events/publish", json.dumps({"topic": TOPIC, "events": [{"data": data}]})
        )
        assert answer.status == 200, answer.json
        Pump(TEXT_APP, urls).drain()
    assert [data] == RECEIVED
    (size,) = sizes
    assert size <= MAX_MESSAGE_BYTES
    data_bytes = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    print(f"maximal event: {data_bytes} B data -> {size} B message")


def test_every_queue_sets_its_maximum_message_size(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = render_template(build_model(TEXT_APP), "workflows")["Resources"]
    queues = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::Queue"]
    assert len(queues) == 2  # the queue and its dead-letter queue
    assert all(q["MaximumMessageSize"] == MAX_MESSAGE_BYTES for q in queues)
    urls = provision(TEXT_APP, tmp_path, monkeypatch)
    for url in (urls["text-sink"], urls["text-sink"] + "-dlq"):
        got = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        assert int(got["Attributes"]["MaximumMessageSize"]) == MAX_MESSAGE_BYTES

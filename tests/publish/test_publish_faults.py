"""The publisher crashes after each AWS call in turn; the client's retry leaves every event stored once
and in every subscriber's queue (duplicates in a queue are allowed: the worker turns them away)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fanapp import SUBSCRIBERS, TOPIC, provision_fan_app
from helpers.apigw import gateway_call, http_event
from helpers.aws_calls import Crash, count_calls, crash_after
from helpers.aws_state import drain
from polos.api.keys import KeyStore
from polos.payloads import EventItem
from polos.publish import events as event_store
from polos.publish.events import EventStore
from polos.publish.messages import WorkflowMessage
from polos.publish.publishing import NewEvent, publish_events

PLAIN, CLAIMED = 8, 2


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    urls = provision_fan_app(tmp_path, monkeypatch)
    publish_events(TOPIC, [NewEvent(id="shared", data={"tag": 0})])  # an id stored before every request
    for workflow_id in SUBSCRIBERS:
        drain(urls[workflow_id])
    return urls


def request_body(tag: int) -> dict[str, Any]:
    events: list[dict[str, Any]] = [{"data": {"tag": tag, "i": i}} for i in range(PLAIN)]
    events += [{"data": {"tag": tag, "i": PLAIN + j}, "id": f"c{tag}-{j}"} for j in range(CLAIMED)]
    events.append({"data": {"tag": tag, "i": "again"}, "id": "shared"})
    return {"topic": "fan.out", "events": events}


Publish = Callable[[int, str], Any]


@pytest.fixture
def publish(queues: dict[str, str]) -> Publish:
    """``publish(tag, idempotency key)`` through the API handler, with a valid API key."""
    _, api_key = KeyStore().create("faults")

    def call(tag: int, key: str) -> Any:
        headers = {"Idempotency-Key": key}
        event = http_event("POST", "/api/v1/events/publish", body=request_body(tag), headers=headers)
        event["headers"]["authorization"] = f"Bearer {api_key}"
        return gateway_call(event)

    return call


def stored_events() -> list[EventItem]:
    """Every stored event: the crashes leave gaps (reserved ids never written), taken as settled here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(event_store, "GAP_SETTLE_SECONDS", -1)
        return EventStore().list_topic(TOPIC, 0, 1000).events


def assert_published_once_and_delivered(tag: int, response: dict[str, Any], queues: dict[str, str]) -> None:
    stored = stored_events()
    mine = [event for event in stored if event.data.get("tag") == tag]
    assert sorted(event.data["i"] for event in mine) == list(range(PLAIN + CLAIMED)), "each event stored once"
    assert [event.id for event in stored].count("shared") == 1
    answered = [(event["id"], event["sequence_id"]) for event in response["events"]]
    assert answered[:-1] == [
        (event.id, event.sequence_id) for event in sorted(mine, key=lambda e: e.data["i"])
    ]
    assert answered[-1] == ("shared", 1)
    for workflow_id in SUBSCRIBERS:
        received = {WorkflowMessage.from_json(body).event.id for body in drain(queues[workflow_id])}  # type: ignore[union-attr]
        assert {event_id for event_id, _ in answered} <= received, f"{workflow_id} missed events"


def test_a_crash_after_any_aws_call_then_a_retry_with_the_key_publishes_everything_once(
    queues: dict[str, str], publish: Publish
) -> None:
    with count_calls() as calls:
        clean = publish(-1, "clean-run")
    assert clean.status == 200
    assert_published_once_and_delivered(-1, clean.json, queues)
    total = calls["dynamodb"] + calls["sqs"]
    crashed_at: list[str] = []
    for call in range(1, total + 1):
        key = f"key-{call}"
        with crash_after(call) as seen, pytest.raises(Crash):
            publish(call, key)
        crashed_at.append(seen[-1])
        retried = publish(call, key)
        assert retried.status == 200, retried.json
        assert_published_once_and_delivered(call, retried.json, queues)
        assert publish(call, key).json == retried.json  # and the key keeps answering the same
    print(f"covered {len(crashed_at)} crash points: {', '.join(crashed_at)}")
    assert len(crashed_at) == total >= 14


def test_a_crash_while_finishing_an_interrupted_publish_is_finished_by_the_next_retry(
    queues: dict[str, str], publish: Publish
) -> None:
    with count_calls() as calls:
        publish(-1, "clean-run")
    total = calls["dynamodb"] + calls["sqs"]
    with crash_after(total // 2), pytest.raises(Crash):
        publish(1, "twice")
    with crash_after(4), pytest.raises(Crash):  # the retry dies too, midway through the stored plan
        publish(1, "twice")
    answer = publish(1, "twice")
    assert answer.status == 200
    assert_published_once_and_delivered(1, answer.json, queues)


def test_a_crash_while_publishing_a_client_id_event_without_a_key_is_repaired_by_a_retry(
    queues: dict[str, str],
) -> None:
    def publish_one(call: int) -> EventItem:
        return publish_events("fan.out", [NewEvent(id=f"step-event-{call}", data={"step": call})]).events[0]

    with count_calls() as calls:
        probe = publish_events(TOPIC, [NewEvent(id="probe", data={})])
    total = calls["dynamodb"] + calls["sqs"]
    assert probe.events[0].sequence_id == 2
    for call in range(1, total + 1):
        with crash_after(call), pytest.raises(Crash):
            publish_one(call)
        event = publish_one(call)
        assert [e.id for e in stored_events()].count(f"step-event-{call}") == 1
        for workflow_id in SUBSCRIBERS:
            assert event.id in {WorkflowMessage.from_json(b).event.id for b in drain(queues[workflow_id])}  # type: ignore[union-attr]
    print(f"covered {total} crash points of a client-id publish without a key")

"""The SQS message body and the subscription manifest: round trips and clear errors."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from polos.payloads import BatchEventPayload, EventItem, EventPayload, utc_iso
from polos.publish.manifest import Manifest, WorkflowEntry
from polos.publish.messages import MESSAGE_VERSION, WorkflowMessage
from pydantic import ValidationError

EVENT = EventItem(
    id="evt_1",
    sequence_id=7,
    topic="user/signup",
    event_type="user_created",
    data={"user_id": "u1", "nested": {"n": [1, 2]}},
    created_at=datetime(2025, 1, 28, 10, 30, 0, 123456, tzinfo=UTC),
)


def test_event_message_round_trip() -> None:
    message = WorkflowMessage(workflow_id="user-signup-handler", kind="event", event=EVENT)
    body = json.loads(message.to_json())
    assert body["v"] == MESSAGE_VERSION and body["kind"] == "event"
    assert body["event"]["created_at"] == "2025-01-28T10:30:00.123456Z"
    back = WorkflowMessage.from_json(message.to_json())
    assert back == message and back.event == EVENT


def test_invoke_message_round_trip() -> None:
    message = WorkflowMessage(workflow_id="create_user", kind="invoke", run_id="run_abc")
    assert WorkflowMessage.from_json(message.to_json()) == message
    assert "event" not in json.loads(message.to_json())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", r"message body is not JSON"),
        ("[1]", r"not a Polos workflow message"),
        ('{"kind": "event"}', r"not a Polos workflow message \(missing or unknown 'v'\)"),
        ('{"v": 99, "kind": "event", "workflow_id": "w"}', r"missing or unknown 'v'"),
        ('{"v": 1, "kind": "invoke"}', r"message body has no workflow_id"),
        ('{"v": 1, "kind": "invoke", "workflow_id": "w"}', r"unknown kind 'invoke' or lacks its fields"),
        ('{"v": 1, "kind": "other", "workflow_id": "w"}', r"unknown kind 'other'"),
    ],
)
def test_bad_message_bodies(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkflowMessage.from_json(body)


def test_event_message_with_a_bad_event_names_the_field() -> None:
    body = json.loads(WorkflowMessage(workflow_id="w", kind="event", event=EVENT).to_json())
    del body["event"]["sequence_id"]
    with pytest.raises(ValidationError, match="sequence_id"):
        WorkflowMessage.from_json(json.dumps(body))


def test_payload_models() -> None:
    payload = EventPayload.model_validate(EVENT.model_dump(mode="json"))
    assert payload.model_dump() == EVENT.model_dump()
    naive = EventItem.model_validate({**EVENT.model_dump(), "created_at": "2025-01-28T10:30:00"})
    # fixed width (microseconds always): timestamps sort as text
    assert naive.created_at.tzinfo is not None and utc_iso(naive.created_at) == "2025-01-28T10:30:00.000000Z"
    later = EVENT.model_copy(update={"sequence_id": 8, "id": "evt_2"})
    batch = BatchEventPayload(events=[later, EVENT])
    assert [event.sequence_id for event in batch.events] == [7, 8]
    with pytest.raises(ValidationError, match="sequence_id"):
        EventItem.model_validate({**EVENT.model_dump(), "sequence_id": 0})


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = Manifest(
        workflows={
            "b": WorkflowEntry(id="b", topic="order/created", batch=True),
            "a": WorkflowEntry(id="a", topic="order/created", batch=False),
            "c": WorkflowEntry(id="c", topic=None, batch=False),
        }
    )
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest
    assert manifest.subscribers("order/created") == ["a", "b"]
    assert manifest.subscribers("nobody/listens") == []
    assert text == Manifest.from_json(text).to_json()  # stable output


def test_manifest_with_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unsupported manifest version 2"):
        Manifest.from_json('{"version": 2, "workflows": {}}')

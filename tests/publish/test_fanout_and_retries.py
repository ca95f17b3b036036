"""Fan-out chunking and the retries of what the batch APIs leave unprocessed or failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fanapp import SUBSCRIBERS, TOPIC, provision_fan_app
from helpers.aws_state import drain
from polos.aws import chunking, settings
from polos.payloads import EventItem
from polos.publish import events, fanout
from polos.publish.events import EventStore
from polos.publish.fanout import FanoutError, deliver
from polos.publish.messages import WorkflowMessage
from polos.publish.publishing import NewEvent, publish_events
from polos.runtime.records import EventRef

KB = 1024


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(fanout, "pause", lambda attempt: None)
    monkeypatch.setattr(events, "pause", lambda attempt: None)
    return provision_fan_app(tmp_path, monkeypatch)


def event(sequence_id: int, size: int = 10) -> EventItem:
    data = {"blob": "x" * size}
    return EventItem(
        id=f"evt_{sequence_id}", sequence_id=sequence_id, topic=TOPIC, data=data, created_at=datetime.now(UTC)
    )


@contextmanager
def hook(client: Any, name: str, handler: Callable[..., None]) -> Iterator[None]:
    client.meta.events.register(name, handler)
    try:
        yield
    finally:
        client.meta.events.unregister(name, handler)


def test_chunked_respects_count_and_bytes() -> None:
    assert list(chunking.chunked(list(range(25)), 10, 10**9, lambda _: 1)) == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    sizes = [400, 400, 300, 900, 2000, 1]
    assert list(chunking.chunked(sizes, 10, 1000, lambda s: s)) == [[400, 400], [300], [900], [2000], [1]]
    assert list(chunking.chunked([], 10, 10, lambda s: s)) == []


def test_fan_out_batches_stay_within_ten_messages_and_one_mib(queues: dict[str, str]) -> None:
    calls: list[list[int]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append([len(entry["MessageBody"].encode()) for entry in params["Entries"]])

    big = [WorkflowMessage("fan-a", "event", event=event(i, 150 * KB)) for i in range(1, 26)]
    small = [WorkflowMessage("fan-b", "event", event=event(i)) for i in range(1, 26)]
    with hook(settings.sqs(), "provide-client-params.sqs.SendMessageBatch", record):
        deliver(big + small)
    assert all(len(sizes) <= 10 and sum(sizes) <= 1024 * KB for sizes in calls)
    assert [len(sizes) for sizes in calls] == [6, 6, 6, 6, 1, 10, 10, 5]
    for workflow_id in ("fan-a", "fan-b"):
        ids = [WorkflowMessage.from_json(body).event.sequence_id for body in drain(queues[workflow_id])]  # type: ignore[union-attr]
        assert sorted(ids) == list(range(1, 26))


def test_failed_entries_are_sent_again(queues: dict[str, str]) -> None:
    sent: list[list[str]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append([entry["Id"] for entry in params["Entries"]])

    def fail_first_once(parsed: dict[str, Any], **_: Any) -> None:
        if len(sent) == 1:
            entry = parsed["Successful"].pop(3)
            parsed.setdefault("Failed", []).append(
                {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"}
            )

    sqs = settings.sqs()
    with (
        hook(sqs, "provide-client-params.sqs.SendMessageBatch", record),
        hook(sqs, "after-call.sqs.SendMessageBatch", fail_first_once),
    ):
        deliver([WorkflowMessage("fan-a", "event", event=event(i)) for i in range(1, 11)])
    assert sent == [[str(i) for i in range(10)], ["3"]]
    bodies = drain(queues["fan-a"])
    assert len(bodies) == 11  # the failed entry may have arrived: at-least-once
    assert {WorkflowMessage.from_json(b).event.sequence_id for b in bodies} == set(range(1, 11))  # type: ignore[union-attr]


@pytest.mark.parametrize("sender_fault", [True, False])
def test_entries_that_keep_failing_raise(queues: dict[str, str], sender_fault: bool) -> None:
    attempts: list[int] = []

    def fail_all(parsed: dict[str, Any], **_: Any) -> None:
        attempts.append(1)
        failed = [
            {"Id": e["Id"], "SenderFault": sender_fault, "Code": "Boom", "Message": "no"}
            for e in parsed["Successful"]
        ]
        parsed["Successful"], parsed["Failed"] = [], failed

    with (
        hook(settings.sqs(), "after-call.sqs.SendMessageBatch", fail_all),
        pytest.raises(FanoutError, match=r"2 message\(s\) to .*test-fan-a failed after .* Boom: no"),
    ):
        deliver([WorkflowMessage("fan-a", "event", event=event(i)) for i in (1, 2)])
    assert len(attempts) == (1 if sender_fault else chunking.MAX_ATTEMPTS)


def test_an_oversized_message_is_refused_before_sending(queues: dict[str, str]) -> None:
    with pytest.raises(
        FanoutError, match=r"message for workflow 'fan-a' is .* bytes; SQS takes at most 1048576"
    ):
        deliver([WorkflowMessage("fan-a", "event", event=event(1, 1100 * KB))])
    assert drain(queues["fan-a"]) == []


def test_unprocessed_writes_and_reads_are_retried(queues: dict[str, str]) -> None:
    dynamodb = settings.dynamodb()
    table = settings.get_settings().events_table
    seen: dict[str, int] = {"BatchWriteItem": 0, "BatchGetItem": 0}

    def unprocessed_writes(parsed: dict[str, Any], **kwargs: Any) -> None:
        seen["BatchWriteItem"] += 1
        if seen["BatchWriteItem"] == 1:
            parsed["UnprocessedItems"] = {table: requests_sent["write"][:3]}

    def unprocessed_reads(parsed: dict[str, Any], **kwargs: Any) -> None:
        seen["BatchGetItem"] += 1
        if seen["BatchGetItem"] == 1:
            keys = requests_sent["read"][:2]
            parsed["Responses"][table] = [
                item
                for item in parsed["Responses"][table]
                if {"pk": item["pk"], "sk": item["sk"]} not in keys
            ]
            parsed["UnprocessedKeys"] = {table: {"Keys": keys, "ConsistentRead": True}}

    requests_sent: dict[str, list[Any]] = {}

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "BatchWriteItem":
            requests_sent["write"] = params["RequestItems"][table]
        else:
            requests_sent["read"] = params["RequestItems"][table]["Keys"]

    with (
        hook(dynamodb, "provide-client-params.dynamodb.BatchWriteItem", capture),
        hook(dynamodb, "provide-client-params.dynamodb.BatchGetItem", capture),
        hook(dynamodb, "after-call.dynamodb.BatchWriteItem", unprocessed_writes),
        hook(dynamodb, "after-call.dynamodb.BatchGetItem", unprocessed_reads),
    ):
        stored = publish_events(
            "nobody/listens", [NewEvent(id=None, data={"i": i}) for i in range(10)]
        ).events
        loaded = EventStore().get_many([EventRef(e.topic, e.sequence_id, e.id) for e in stored])
    assert seen == {"BatchWriteItem": 2, "BatchGetItem": 2}
    assert loaded == stored


def test_a_transaction_cancelled_by_a_conflict_is_retried_and_its_own_claims_count_as_stored(
    queues: dict[str, str],
) -> None:
    dynamodb = settings.dynamodb()
    tries: list[int] = []

    def conflict_once(**_: Any) -> None:
        tries.append(1)
        if len(tries) == 1:  # committed, but the answer says "conflict": the retry finds its own claims
            error = {"Code": "TransactionCanceledException", "Message": "conflict"}
            reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}]
            raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")  # type: ignore[typeddict-unknown-key]

    with hook(dynamodb, "after-call.dynamodb.TransactWriteItems", conflict_once):
        result = publish_events(TOPIC, [NewEvent(id="tx-1", data={"v": 1})])
    assert len(tries) == 2
    assert result.response["sequence_ids"] == [1]
    assert [(e.id, e.sequence_id) for e in EventStore().list_topic(TOPIC, 0, 10).events] == [("tx-1", 1)]
    for workflow_id in SUBSCRIBERS:
        assert len(drain(queues[workflow_id])) == 1

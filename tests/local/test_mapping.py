"""The event source mapping emulator with a scripted SQS and a fake clock: batching, results, polling."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.local.mapping import (
    EventSourceMapping,
    MappingSpec,
    Pollers,
    drain,
    failed_ids,
    sqs_record,
)

ARN = "arn:aws:sqs:us-east-1:123456789012:q"


def message(n: int, receipt: str | None = None) -> dict[str, Any]:
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": receipt or f"r{n}",
        "Body": f'{{"n": {n}}}',
        "MD5OfBody": "md5",
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
    }


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ScriptedSQS:
    """Messages become visible at scripted times; a receive with a wait advances the clock to the next
    arrival (or by the whole wait when none comes), like a long poll."""

    clock: Clock
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    receives: list[tuple[int, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        count, wait = kwargs["MaxNumberOfMessages"], kwargs["WaitTimeSeconds"]
        assert kwargs["AttributeNames"] == ["All"] and kwargs["MessageAttributeNames"] == ["All"]
        assert 1 <= count <= 10 and isinstance(wait, int)
        self.receives.append((count, wait))
        visible = [m for at, m in self.arrivals if at <= self.clock.now]
        if not visible and wait:
            upcoming = [at for at, _ in self.arrivals if at <= self.clock.now + wait]
            self.clock.now = min(upcoming) if upcoming else self.clock.now + wait
            visible = [m for at, m in self.arrivals if at <= self.clock.now]
        taken = visible[:count]
        self.arrivals = [(at, m) for at, m in self.arrivals if m not in taken]
        return {"Messages": taken} if taken else {}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        assert len(kwargs["Entries"]) <= 10
        self.deleted += [entry["ReceiptHandle"] for entry in kwargs["Entries"]]
        return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]]}

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        assert all(entry["VisibilityTimeout"] == 0 for entry in kwargs["Entries"])
        self.released += [entry["ReceiptHandle"] for entry in kwargs["Entries"]]
        return {}

    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": str(len(self.arrivals))}}


class Recorder:
    """A fake worker: records each event's message ids and answers with ``answer(ids)``."""

    def __init__(self, answer: Any = None) -> None:
        self.batches: list[list[str]] = []
        self.events: list[dict[str, Any]] = []
        self._answer = answer

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        ids = [record["messageId"] for record in event["Records"]]
        self.batches.append(ids)
        return self._answer(ids) if callable(self._answer) else self._answer


def mapping(sqs: ScriptedSQS, invoke: Any, batch_size: int = 10, window: int = 0) -> EventSourceMapping:
    spec = MappingSpec("wf", "https://q", ARN, batch_size, window)
    return EventSourceMapping(spec, sqs, invoke, clock=sqs.clock, pause=sqs.clock.sleep)  # type: ignore[arg-type]


def test_full_batch_is_invoked_at_once() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(i)) for i in range(7)])
    worker = Recorder()
    delivery = mapping(sqs, worker, batch_size=3, window=30).poll(wait_seconds=1)
    assert delivery is not None and worker.batches == [["m0", "m1", "m2"]]
    assert sqs.clock.now == 0  # no waiting for the window once BatchSize messages are in hand
    assert sqs.deleted == ["r0", "r1", "r2"]


def test_partial_batch_waits_for_the_window_from_its_first_message() -> None:
    sqs = ScriptedSQS(Clock(), [(5, message(1)), (6, message(2)), (9, message(3)), (20, message(4))])
    worker = Recorder()
    batcher = mapping(sqs, worker, batch_size=10, window=5)
    assert batcher.poll(wait_seconds=1) is None  # nothing within the first long poll
    sqs.clock.now = 5
    batcher.poll(wait_seconds=1)
    assert worker.batches == [["m1", "m2", "m3"]]
    assert 10 <= sqs.clock.now < 10.1  # invoked when the window (5 s from the first message) ran out
    assert all(wait <= 1 for _, wait in sqs.receives)


def test_without_window_one_receive_is_one_batch() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(1)), (0, message(2)), (3, message(3))])
    worker = Recorder()
    mapping(sqs, worker, batch_size=10, window=0).poll(wait_seconds=1)
    assert worker.batches == [["m1", "m2"]]
    assert len(sqs.receives) == 1


def test_flush_takes_what_is_visible_without_waiting() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(1)), (0, message(2)), (60, message(3))])
    worker = Recorder()
    mapping(sqs, worker, batch_size=10, window=30).poll(wait_seconds=0, flush=True)
    assert worker.batches == [["m1", "m2"]] and sqs.clock.now == 0


def test_receive_asks_for_at_most_what_the_batch_still_needs() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(i)) for i in range(25)])
    worker = Recorder()
    mapping(sqs, worker, batch_size=25, window=10).poll(wait_seconds=1)
    assert [count for count, _ in sqs.receives] == [10, 10, 5]
    assert len(worker.batches[0]) == 25


def test_a_message_seen_again_keeps_its_newest_receipt_handle() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(1)), (2, message(1, receipt="r1-again")), (3, message(2))])
    worker = Recorder()
    mapping(sqs, worker, batch_size=10, window=5).poll(wait_seconds=1)
    assert worker.batches == [["m1", "m2"]]
    assert sqs.deleted == ["r1-again", "r2"]


def test_batch_item_failures_stay_on_the_queue() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(i)) for i in range(3)])
    worker = Recorder(lambda ids: {"batchItemFailures": [{"itemIdentifier": "m1"}]})
    delivery = mapping(sqs, worker).poll(wait_seconds=0)
    assert delivery is not None and [m["MessageId"] for m in delivery.failed] == ["m1"]
    assert sqs.deleted == ["r0", "r2"]


def test_a_failed_invocation_leaves_the_whole_batch() -> None:
    class Crash(BaseException):
        pass

    def crash(event: dict[str, Any]) -> None:
        raise Crash("killed")

    sqs = ScriptedSQS(Clock(), [(0, message(1)), (0, message(2))])
    delivery = mapping(sqs, crash).poll(wait_seconds=0)
    assert delivery is not None and isinstance(delivery.error, Crash)
    assert len(delivery.failed) == 2 and sqs.deleted == []


@pytest.mark.parametrize(
    ("answer", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "a"}]}, {"a"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),  # unknown id: whole batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"id": "a"}]}, {"a", "b"}),
        ({"batchItemFailures": "a"}, {"a", "b"}),
        ("not json", {"a", "b"}),
    ],
)
def test_partial_batch_response_rules(answer: Any, failed: set[str]) -> None:
    assert failed_ids(answer, ["a", "b"]) == failed


def test_sqs_record_is_lambda_shaped() -> None:
    raw = {
        **message(1),
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "x"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
        "MD5OfMessageAttributes": "md5attrs",
    }
    record = sqs_record(raw, ARN)  # type: ignore[arg-type]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == ARN
    assert record["awsRegion"] == "us-east-1"
    assert (record["messageId"], record["receiptHandle"], record["body"]) == ("m1", "r1", '{"n": 1}')
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["md5OfBody"] == "md5" and record["md5OfMessageAttributes"] == "md5attrs"
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "x",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="


def test_stopping_while_collecting_releases_the_messages() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(1))])
    worker = Recorder()
    stop = threading.Event()

    def receive_then_stop(**kwargs: Any) -> dict[str, Any]:
        answer = ScriptedSQS.receive_message(sqs, **kwargs)
        stop.set()
        return answer

    sqs.receive_message = receive_then_stop  # type: ignore[method-assign]
    assert mapping(sqs, worker, window=30).poll(wait_seconds=1, stopping=stop.is_set) is None
    assert worker.batches == [] and sqs.released == ["r1"]


def test_drain_redelivers_failures_until_the_queues_are_idle() -> None:
    sqs = ScriptedSQS(Clock(), [(0, message(1)), (0, message(2))])
    attempts: dict[str, int] = {}

    def worker(event: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            attempts[record["messageId"]] = attempts.get(record["messageId"], 0) + 1
            if record["messageId"] == "m2" and attempts["m2"] < 3:
                failures.append({"itemIdentifier": "m2"})
        return {"batchItemFailures": failures}

    def release(**kwargs: Any) -> dict[str, Any]:  # visible again at once: back on the scripted queue
        for entry in kwargs["Entries"]:
            sqs.arrivals.append((0, message(2, receipt=entry["ReceiptHandle"] + "'")))
        return {}

    sqs.change_message_visibility_batch = release  # type: ignore[method-assign]
    deliveries = drain([mapping(sqs, worker)], redeliver_failures=True, timeout=5)
    assert attempts == {"m1": 1, "m2": 3}
    assert len(deliveries) == 3 and sqs.arrivals == []


def test_pollers_run_workflows_concurrently() -> None:
    both_in_flight = threading.Barrier(2, timeout=5)
    done = threading.Event()
    seen: list[str] = []

    def worker(event: dict[str, Any]) -> None:
        both_in_flight.wait()  # returns only when the other workflow's invocation is running too
        seen.append(event["Records"][0]["eventSourceARN"])
        if len(seen) == 2:
            done.set()

    class OneShotSQS:
        def __init__(self) -> None:
            self.sent = False

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            if self.sent:
                threading.Event().wait(0.01)
                return {}
            self.sent = True
            return {"Messages": [message(1)]}

        def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            return {}

    mappings = [
        EventSourceMapping(MappingSpec(wf, f"https://{wf}", f"{ARN}-{wf}", 10), OneShotSQS(), worker)  # type: ignore[arg-type]
        for wf in ("a", "b")
    ]
    pollers = Pollers(mappings)
    pollers.start()
    try:
        assert done.wait(5), "the two workflows' invocations did not overlap"
    finally:
        assert pollers.stop(timeout=5)
    assert sorted(seen) == [f"{ARN}-a", f"{ARN}-b"]

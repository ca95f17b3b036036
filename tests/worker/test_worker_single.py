"""Single-event runs fed by real SQS messages (moto): duplicates, partial failures, retries, dead letters."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.stack import provision
from helpers.worker import Pump, atomic_dynamodb, dlq_url, publish, queue_arn, queue_depth
from polos import EventPayload, NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.publish.fanout import deliver, event_messages
from polos.publish.messages import WorkflowMessage
from polos.runtime import worker
from polos.runtime.journal import Journal
from polos.runtime.runs import event_run_id

from infra.local.mapping import sqs_record

MAX_ATTEMPTS = 2
calls: Counter[str] = Counter()
gate: dict[str, threading.Event] = {}


def note(name: str) -> str:
    calls[name] += 1
    return name


@workflow(id="ws-once", trigger_on_event="ws/once")
async def once(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    await ctx.step.run("note", note, f"once-{payload.sequence_id}")
    if payload.data.get("fail_until_attempt", 0) > ctx.attempt:
        raise RuntimeError(f"failing attempt {ctx.attempt}")
    return {"seq": payload.sequence_id, "attempt": ctx.attempt}


@workflow(id="ws-slow", trigger_on_event="ws/slow")
async def slow(ctx: WorkflowContext, payload: EventPayload) -> str:
    def wait_for_gate() -> str:
        gate["entered"].set()
        assert gate["release"].wait(10), "the test never released the step"
        return note("slow")

    return str(await ctx.step.run("wait", wait_for_gate))


@workflow(id="ws-poison", trigger_on_event="ws/poison")
async def poison(ctx: WorkflowContext, payload: EventPayload) -> None:
    note("poison")
    raise RuntimeError(f"poisoned on attempt {ctx.attempt}")


@workflow(id="ws-fatal", trigger_on_event="ws/fatal")
async def fatal(ctx: WorkflowContext, payload: EventPayload) -> None:
    note("fatal")
    raise NonRetryableError("this event can never be processed")


APP = App("worker-single", [once, slow, poison, fatal])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(MAX_ATTEMPTS))
    calls.clear()
    urls = provision(APP, tmp_path, monkeypatch, max_attempts=MAX_ATTEMPTS)
    with atomic_dynamodb():
        yield urls


@pytest.fixture
def pump(urls: dict[str, str]) -> Pump:
    return Pump(APP, urls)


def receive(url: str) -> list[Any]:
    answer = settings.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return list(answer["Messages"])


def run_of(workflow_id: str, event: Any) -> Any:
    loaded = Journal().load(event_run_id(workflow_id, event.topic, event.sequence_id))
    assert loaded is not None
    return loaded


def test_one_event_one_run_and_a_duplicate_delivery_is_acknowledged_without_work(
    pump: Pump, urls: dict[str, str]
) -> None:
    [event] = publish("ws/once", {})
    first = pump.once("ws-once")
    assert first is not None and len(first.messages) == 1 and not first.failed
    deliver(event_messages("ws/once", [event]))  # the publisher retried: the same event again
    second = pump.once("ws-once")
    assert second is not None and len(second.messages) == 1 and not second.failed
    loaded = run_of("ws-once", event)
    assert (loaded.run.status, loaded.run.attempts, loaded.run.trigger_type) == ("completed", 1, "event")
    assert loaded.run.event_refs[0].id == event.id
    assert calls[f"once-{event.sequence_id}"] == 1
    assert queue_depth(urls["ws-once"]) == 0


def test_duplicates_in_one_delivery_make_one_run(pump: Pump) -> None:
    [event] = publish("ws/once", {})
    deliver(event_messages("ws/once", [event]) * 3)
    delivery = pump.once("ws-once")
    assert delivery is not None and len(delivery.messages) == 4
    # Only one of the four took the run: the others were turned away while it ran, then acknowledged.
    pump.drain()
    assert calls[f"once-{event.sequence_id}"] == 1
    assert run_of("ws-once", event).run.attempts == 1


def test_concurrent_duplicate_is_turned_away_and_acknowledged_once_the_run_is_finished(
    urls: dict[str, str],
) -> None:
    gate.update(entered=threading.Event(), release=threading.Event())
    [event] = publish("ws/slow", {})
    deliver(event_messages("ws/slow", [event]))
    url = urls["ws-slow"]
    messages = receive(url)
    assert len(messages) == 2
    arn = queue_arn(url)
    answers: dict[str, Any] = {}

    def invoke(name: str, message: Any) -> None:
        answers[name] = worker.handle({"Records": [sqs_record(message, arn)]}, APP)

    first = threading.Thread(target=invoke, args=("first", messages[0]))
    first.start()
    assert gate["entered"].wait(10)  # the first attempt holds the run and is inside its step
    second = threading.Thread(target=invoke, args=("second", messages[1]))
    second.start()
    second.join(10)
    assert answers["second"] == {"batchItemFailures": [{"itemIdentifier": messages[1]["MessageId"]}]}
    gate["release"].set()
    first.join(10)
    assert answers["first"] == {"batchItemFailures": []}
    # SQS delivers the turned-away duplicate again: the run is finished, so it is acknowledged.
    again = worker.handle({"Records": [sqs_record(messages[1], arn)]}, APP)
    assert again == {"batchItemFailures": []}
    loaded = run_of("ws-slow", event)
    assert (loaded.run.status, loaded.run.attempts, calls["slow"]) == ("completed", 1, 1)
    assert loaded.run.result_json == '"slow"'


def test_two_simultaneous_duplicate_deliveries_run_the_event_once(urls: dict[str, str]) -> None:
    [event] = publish("ws/once", {})
    deliver(event_messages("ws/once", [event]))
    url = urls["ws-once"]
    messages = receive(url)
    assert len(messages) == 2
    arn = queue_arn(url)
    start = threading.Barrier(2)
    answers: list[Any] = []

    def invoke(message: Any) -> None:
        start.wait(5)
        answers.append(worker.handle({"Records": [sqs_record(message, arn)]}, APP))

    threads = [threading.Thread(target=invoke, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    left = [failure["itemIdentifier"] for answer in answers for failure in answer["batchItemFailures"]]
    # One took the run; the other was turned away (busy) or came after it finished (acknowledged).
    assert len(answers) == 2 and len(left) <= 1
    for message in messages:
        if message["MessageId"] in left:
            assert worker.handle({"Records": [sqs_record(message, arn)]}, APP) == {"batchItemFailures": []}
    loaded = run_of("ws-once", event)
    assert (loaded.run.status, loaded.run.attempts, calls[f"once-{event.sequence_id}"]) == ("completed", 1, 1)


def test_partial_batch_failure_leaves_only_the_failing_record(pump: Pump, urls: dict[str, str]) -> None:
    events = publish("ws/once", {}, {"fail_until_attempt": 2}, {})
    delivery = pump.once("ws-once", redeliver=False)
    assert delivery is not None and len(delivery.messages) == 3
    failing = next(m for m in delivery.messages if '"fail_until_attempt"' in m["Body"])
    assert [m["MessageId"] for m in delivery.failed] == [failing["MessageId"]]
    assert [run_of("ws-once", e).run.status for e in events] == ["completed", "queued", "completed"]
    assert queue_depth(urls["ws-once"]) == 1
    pump.mapping("ws-once").release(delivery.failed)
    retry = pump.once("ws-once")
    assert retry is not None and len(retry.messages) == 1 and not retry.failed
    loaded = run_of("ws-once", events[1])
    assert (loaded.run.status, loaded.run.attempts) == ("completed", 2)
    assert loaded.run.error is None
    # The step journaled by the failed attempt was not run again; the others ran once each.
    assert [calls[f"once-{e.sequence_id}"] for e in events] == [1, 1, 1]
    assert [(s.key, s.status, s.attempts) for s in loaded.steps] == [("note", "completed", 1)]


def test_poison_message_fails_the_run_after_max_attempts_and_reaches_the_dlq(
    pump: Pump, urls: dict[str, str]
) -> None:
    [event] = publish("ws/poison", {"bad": True})
    deliveries = pump.drain("ws-poison")
    # Each failed execution but the last leaves the message; the last fails the run and dead-letters it.
    assert [len(d.failed) for d in deliveries] == [1] * (MAX_ATTEMPTS - 1) + [0]
    assert calls["poison"] == MAX_ATTEMPTS
    loaded = run_of("ws-poison", event)
    assert (loaded.run.status, loaded.run.attempts) == ("failed", MAX_ATTEMPTS)
    assert loaded.run.error is not None
    assert (loaded.run.error.type, loaded.run.error.message) == (
        "RuntimeError",
        f"poisoned on attempt {MAX_ATTEMPTS}",
    )
    dead = settings.sqs().receive_message(QueueUrl=dlq_url(urls["ws-poison"]), WaitTimeSeconds=0)["Messages"]
    assert [WorkflowMessage.from_json(m["Body"]).event for m in dead] == [event]
    assert queue_depth(urls["ws-poison"]) == 0


def test_non_retryable_error_fails_the_run_after_one_attempt_and_acknowledges(
    pump: Pump, urls: dict[str, str]
) -> None:
    [event] = publish("ws/fatal", {})
    deliveries = pump.drain("ws-fatal")
    assert [len(d.failed) for d in deliveries] == [0]
    loaded = run_of("ws-fatal", event)
    assert (loaded.run.status, loaded.run.attempts, calls["fatal"]) == ("failed", 1, 1)
    assert loaded.run.error is not None and loaded.run.error.type == "NonRetryableError"
    assert queue_depth(urls["ws-fatal"]) == 0
    assert queue_depth(dlq_url(urls["ws-fatal"])) == 0


def test_unusable_messages_are_left_for_the_dlq_without_failing_the_others(
    pump: Pump, urls: dict[str, str]
) -> None:
    sqs, url = settings.sqs(), urls["ws-once"]
    [event] = publish("ws/once", {})
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    sqs.send_message(
        QueueUrl=url, MessageBody=WorkflowMessage("ws-nobody", "invoke", run_id="run_x").to_json()
    )
    # A message for another workflow of the app arriving on this queue is refused too.
    sqs.send_message(
        QueueUrl=url, MessageBody=WorkflowMessage("ws-fatal", "invoke", run_id="run_y").to_json()
    )
    deliveries = pump.drain("ws-once")
    assert len(deliveries[0].messages) == 4 and len(deliveries[0].failed) == 3
    assert run_of("ws-once", event).run.status == "completed"
    assert calls["fatal"] == 0
    assert queue_depth(dlq_url(url)) == 3


def test_a_record_without_message_id_is_refused_before_any_record_runs(urls: dict[str, str]) -> None:
    """It could be neither acknowledged nor left on its own: the invocation fails, nothing has run."""
    [event] = publish("ws/once", {})
    deliver(event_messages("ws/once", [event]))
    url = urls["ws-once"]
    good, other = (sqs_record(message, queue_arn(url)) for message in receive(url))
    del other["messageId"]
    with pytest.raises(ValueError, match="SQS record 1 has no messageId"):
        worker.handle({"Records": [good, other]}, APP)
    assert Journal().load(event_run_id("ws-once", event.topic, event.sequence_id)) is None
    assert calls[f"once-{event.sequence_id}"] == 0

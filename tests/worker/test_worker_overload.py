"""A throttle (or timeout) of the worker's own AWS calls is an infrastructure failure: never the run's error,
never a failed step, never a spent attempt; the record is deferred (sent again, delayed) and a later
delivery finishes the run. A throttle the workflow's own code meets is the workflow's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers.stack import provision
from helpers.throttle import throttle
from helpers.worker import Pump, atomic_dynamodb, publish
from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import deferral
from polos.runtime.journal import Journal
from polos.runtime.records import LoadedRun
from polos.runtime.runs import event_run_id

MAX_ATTEMPTS = 2
calls: Counter[str] = Counter()


def note(name: str) -> str:
    calls[name] += 1
    return name


@workflow(id="wo-steps", trigger_on_event="wo/steps")
async def two_steps(ctx: WorkflowContext, payload: EventPayload) -> str:
    await ctx.step.run("first", note, "first")
    return str(await ctx.step.run("second", note, "second"))


@workflow(id="wo-publish", trigger_on_event="wo/publish")
async def publishes(ctx: WorkflowContext, payload: EventPayload) -> int:
    event = await ctx.step.publish_event("announce", "wo/announced", {"n": payload.sequence_id})
    return event.sequence_id


@workflow(id="wo-swallow", trigger_on_event="wo/swallow")
async def swallows(ctx: WorkflowContext, payload: EventPayload) -> str:
    await ctx.step.run("first", note, "swallow-first")
    try:
        await ctx.step.run("second", note, "swallow-second")
    except Exception:  # what a careless workflow does: the attempt must still stop
        return "went on"
    return "done"


@workflow(id="wo-announced", trigger_on_event="wo/announced")
async def announced(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


def users_throttle() -> None:
    """The workflow's own DynamoDB call was throttled (its own client: not Polos's)."""
    note("users")
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
    raise ClientError({"Error": error}, "PutItem")


@workflow(id="wo-user", trigger_on_event="wo/user")
async def users_own(ctx: WorkflowContext, payload: EventPayload) -> None:
    await ctx.step.run("write", users_throttle, max_retries=0)


APP = App("worker-overload", [two_steps, publishes, announced, swallows, users_own])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(MAX_ATTEMPTS))
    calls.clear()
    urls = provision(APP, tmp_path, monkeypatch, max_attempts=MAX_ATTEMPTS)
    with atomic_dynamodb():
        yield urls


@pytest.fixture
def pump(urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Pump:
    """Deferred messages come back at once (the delay itself has a test of its own)."""
    monkeypatch.setattr(deferral, "delay_seconds", lambda deferred_before: 0)
    return Pump(APP, urls)


def run_of(workflow_id: str, event: Any) -> LoadedRun:
    loaded = maybe_run_of(workflow_id, event)
    assert loaded is not None
    return loaded


def maybe_run_of(workflow_id: str, event: Any) -> LoadedRun | None:
    return Journal().load(event_run_id(workflow_id, event.topic, event.sequence_id))


def runs_table(params: dict[str, Any]) -> bool:
    return params.get("TableName") == settings.get_settings().runs_table


def lease(params: dict[str, Any]) -> bool:
    """The lease's conditional write (the run's first write of an attempt)."""
    return runs_table(params) and "lease_owner = :owner" in params.get("UpdateExpression", "")


def step_write(params: dict[str, Any]) -> bool:
    """A step journaled in its own item (PutItem) or kept in its run item (UpdateItem)."""
    own = params.get("Item", {}).get("sk", {}).get("S", "").startswith("step#")
    kept = params.get("UpdateExpression") == "SET #step = :step"
    return runs_table(params) and (own or kept)


STEP_WRITES = {"PutItem", "UpdateItem"}


def deferred_once(pump: Pump, workflow_id: str) -> None:
    """One delivery: its record is acknowledged (deferred), not left for SQS."""
    delivery = pump.once(workflow_id, redeliver=False)
    assert delivery is not None and len(delivery.messages) == 1
    assert delivery.failed == [], "a throttled record must be deferred, not left (it would spend a receive)"


def assert_completes(pump: Pump, workflow_id: str, event: Any) -> LoadedRun:
    pump.drain(workflow_id)
    loaded = run_of(workflow_id, event)
    assert loaded.run.status == "completed", loaded.run
    assert loaded.run.error is None
    assert all(step.status == "completed" for step in loaded.steps)
    return loaded


@pytest.mark.parametrize(
    ("where", "operations", "when"),
    [
        ("lease", {"UpdateItem"}, lease),
        ("journal", STEP_WRITES, step_write),
        ("journal read", {"Query"}, runs_table),
    ],
)
def test_a_throttle_in_the_runtime_is_no_error_and_a_later_delivery_completes_the_run(
    pump: Pump, where: str, operations: set[str], when: Callable[[dict[str, Any]], bool]
) -> None:
    [event] = publish("wo/steps", {})
    if where == "journal read":  # the journal is read on a later attempt only: make one first
        with throttle(STEP_WRITES, when=step_write):
            deferred_once(pump, "wo-steps")
    with throttle(operations, when=when) as throttled:
        deferred_once(pump, "wo-steps")
    assert throttled.total >= 1
    loaded = maybe_run_of("wo-steps", event)  # a throttled first lease: the run was not created
    assert (loaded is None) == (where == "lease")
    if loaded is not None:
        assert loaded.run.error is None and loaded.run.status == "queued"  # the lease was given back
        assert loaded.run.message_attempts == 0  # and the execution it counted: max_attempts is not spent
        assert not [step for step in loaded.steps if step.status == "failed"]
    assert_completes(pump, "wo-steps", event)
    assert calls == Counter({"first": 1, "second": 1})  # the step done before the throttle was kept


def test_a_throttled_fan_out_in_publish_event_fails_no_step(pump: Pump, urls: dict[str, str]) -> None:
    [event] = publish("wo/publish", {})
    with throttle({"SendMessageBatch"}) as throttled:
        deferred_once(pump, "wo-publish")
    assert throttled.total == 1
    loaded = run_of("wo-publish", event)
    assert loaded.run.error is None and loaded.steps == []
    done = assert_completes(pump, "wo-publish", event)
    [step] = done.steps
    assert step.attempts == 1  # the throttled call was not counted as a call of the step's function


def test_a_throttle_the_workflow_swallowed_still_stops_the_attempt(pump: Pump) -> None:
    [event] = publish("wo/swallow", {})
    with throttle(STEP_WRITES, when=step_write):
        deferred_once(pump, "wo-swallow")
    assert run_of("wo-swallow", event).run.status != "completed"
    loaded = assert_completes(pump, "wo-swallow", event)
    assert loaded.run.result_json == '"done"'


def test_a_throttle_on_the_final_delivery_does_not_fail_the_run(pump: Pump, urls: dict[str, str]) -> None:
    """Receives that executed nothing (here: taken and let go) spend no attempt; a throttle of the lease
    defers the message, and the run completes."""
    [event] = publish("wo/steps", {})
    url = urls["wo-steps"]
    sqs = settings.sqs()
    for _ in range(2 * MAX_ATTEMPTS):  # receives that executed nothing
        [message] = sqs.receive_message(QueueUrl=url)["Messages"]
        receipt = message["ReceiptHandle"]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    with throttle({"UpdateItem"}, when=lease):
        deferred_once(pump, "wo-steps")
    assert_completes(pump, "wo-steps", event)


def test_the_users_own_throttle_is_the_workflows_failure(pump: Pump) -> None:
    [event] = publish("wo/user", {})
    delivery = pump.once("wo-user", redeliver=False)
    assert delivery is not None and len(delivery.failed) == 1  # left: a retry of the workflow's failure
    loaded = run_of("wo-user", event)
    assert loaded.run.error is not None and "ProvisionedThroughputExceeded" in loaded.run.error.message
    [step] = loaded.steps
    assert step.status == "failed"


def test_a_deferred_message_comes_back_delayed_with_no_receive_spent(urls: dict[str, str]) -> None:
    [event] = publish("wo/steps", {})
    pump = Pump(APP, urls)
    with throttle({"UpdateItem"}, when=lease):
        deferred_once(pump, "wo-steps")
    url = urls["wo-steps"]
    attributes = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert 1 <= deferral.delay_seconds(0) <= 2 and deferral.delay_seconds(20) <= deferral.MAX_DELAY_SECONDS
    record = {"messageAttributes": {deferral.ATTRIBUTE: {"stringValue": "3"}}}
    assert deferral.deferrals(record) == 3
    assert maybe_run_of("wo-steps", event) is None

"""Phantom invoke: a SendMessageBatch that reaches SQS but whose answer is lost (issue 11, item 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, queue_depth
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings

received: list[Any] = []


@workflow(id="iu-echo")
async def echo(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    received.append(payload)
    return payload


APP = App("invoke-unclear", [echo])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    received.clear()
    return provision(APP, tmp_path, monkeypatch)


class LostAnswers:
    """A botocore hook: the next ``times`` SendMessageBatch calls are applied by SQS, then their answer is
    lost (``ReadTimeoutError``, which botocore's own retries do not hide here: the hook runs after them)."""

    def __init__(self, times: int = 1) -> None:
        self.times = times

    def __call__(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        if model.name == "SendMessageBatch" and self.times > 0:
            self.times -= 1
            raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


@pytest.fixture
def lose_answer(urls: dict[str, str]) -> Any:
    hook = LostAnswers()
    events = settings.sqs().meta.events
    events.register("after-call.sqs.SendMessageBatch", hook)
    yield hook
    events.unregister("after-call.sqs.SendMessageBatch", hook)


def run_once(api: Api, headers: dict[str, str]) -> Any:
    return api("POST", "/api/v1/workflows/iu-echo/run", {"payload": {"n": 1}}, headers=headers)


def test_a_retry_with_the_same_key_after_a_lost_answer_gets_the_run_and_it_runs_once(
    urls: dict[str, str], lose_answer: LostAnswers
) -> None:
    api, pump = Api(), Pump(APP, urls)
    headers = {"Idempotency-Key": "order-7"}
    assert run_once(api, headers).status == 500
    assert queue_depth(urls["iu-echo"]) == 1  # the message did reach SQS
    retry = run_once(api, headers)
    assert retry.status == 202, retry.json
    assert queue_depth(urls["iu-echo"]) == 2  # sent again: a duplicate naming the same run
    pump.drain()
    run = api("GET", f"/api/v1/runs/{retry.json['run_id']}").json
    assert (run["status"], run["attempts"], run["result"]) == ("completed", 1, {"n": 1})
    assert received == [{"n": 1}]  # the duplicate was turned away; nothing ran with no payload
    assert run_once(api, headers).status == 202  # and a third request still gets the same run


def test_a_message_delivered_before_the_retry_runs_the_stored_payload_and_the_retry_gets_that_run(
    urls: dict[str, str], lose_answer: LostAnswers
) -> None:
    api, pump = Api(), Pump(APP, urls)
    headers = {"Idempotency-Key": "order-8"}
    assert run_once(api, headers).status == 500
    pump.drain()  # the worker takes the message that did arrive before the caller retries
    assert received == [{"n": 1}]  # the run the request stored, with its payload (never None)
    retry = run_once(api, headers)
    assert retry.status == 202, retry.json
    run = api("GET", f"/api/v1/runs/{retry.json['run_id']}").json
    assert (run["status"], run["attempts"], run["result"]) == ("completed", 1, {"n": 1})
    assert queue_depth(urls["iu-echo"]) == 0  # finished: the retry sends nothing


def test_without_a_key_the_run_is_removed_and_its_message_acknowledged_unexecuted(
    urls: dict[str, str], lose_answer: LostAnswers
) -> None:
    api, pump = Api(), Pump(APP, urls)
    assert run_once(api, {}).status == 500
    assert queue_depth(urls["iu-echo"]) == 1
    deliveries = pump.drain()
    assert [len(d.failed) for d in deliveries] == [0]  # acknowledged at once, not dead-lettered
    assert received == []
    assert api("GET", "/api/v1/runs").json["runs"] == []
    assert queue_depth(urls["iu-echo"] + "-dlq") == 0

"""``polos.testing``: the in-process stack, draining, failure injection, batch windows, isolation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.errors import NonRetryableError, PolosAPIError
from polos.testing import InjectedFailure, Stack, local_stack
from pydantic import BaseModel

calls: Counter[str] = Counter()


def effect(name: str) -> str:
    calls[name] += 1
    return name


@workflow(id="tt-steps", trigger_on_event="tt/steps")
async def steps(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    retries = int(payload.data.get("max_retries", 2))
    first = await ctx.step.run("first", effect, "first", max_retries=retries, base_delay=0)
    second = await ctx.step.run("second", effect, "second", max_retries=retries, base_delay=0)
    return {"steps": [first, second], "attempt": ctx.attempt}


@workflow(id="tt-poison", trigger_on_event="tt/poison")
async def poison(ctx: WorkflowContext, payload: EventPayload) -> None:
    raise RuntimeError("never works")


@workflow(id="tt-batch", trigger_on_event="tt/batch", batch_size=5, batch_timeout_seconds=1)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> int:
    return len(payload.events)


class Greeting(BaseModel):
    name: str


@workflow(id="tt-greet")
async def greet(ctx: WorkflowContext, payload: Greeting) -> str:
    greeting: str = await ctx.step.run("greet", lambda: f"hello {payload.name}")
    return greeting


APP = App("polos-testing-tests", [steps, poison, batch, greet])


@pytest.fixture(scope="module")
def module_stack() -> Iterator[Stack]:
    with local_stack(APP, max_attempts=2) as stack:
        yield stack


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    calls.clear()
    yield module_stack
    module_stack.clear_faults()
    module_stack.drain()


def published_run(stack: Stack, workflow_id: str, topic: str, data: dict[str, Any]) -> dict[str, Any]:
    event_id = stack.publish(topic, [{"data": data}])["events"][0]["id"]
    stack.drain()
    (run,) = [run for run in stack.runs(workflow_id) if event_id in run["trigger"]["event_ids"]]
    return run


def test_failures_within_a_steps_retries(stack: Stack) -> None:
    stack.fail_step("first", times=2)
    run = published_run(stack, "tt-steps", "tt/steps", {})
    assert run["status"] == "completed" and run["attempts"] == 1
    assert [(s["key"], s["attempts"]) for s in run["steps"]] == [("first", 3), ("second", 1)]
    assert calls == {"first": 1, "second": 1}  # the two injected failures came before the real call


def test_failures_beyond_a_steps_retries_retry_the_run(stack: Stack) -> None:
    stack.fail_step("second", times=3)
    run = published_run(stack, "tt-steps", "tt/steps", {"max_retries": 1})
    assert run["status"] == "completed" and run["attempts"] == 2
    assert [(s["key"], s["attempts"]) for s in run["steps"]] == [("first", 1), ("second", 4)]
    assert calls == {"first": 1, "second": 1}


def test_faults_for_one_run_and_custom_errors(stack: Stack) -> None:
    other = published_run(stack, "tt-steps", "tt/steps", {"max_retries": 0})
    stack.fail_step("first", times=5, run_id=other["run_id"], error=ValueError)  # that run is finished
    assert published_run(stack, "tt-steps", "tt/steps", {"max_retries": 0})["status"] == "completed"
    stack.clear_faults()
    stack.fail_step("first", times=1, error=NonRetryableError)
    run = published_run(stack, "tt-steps", "tt/steps", {})
    assert run["status"] == "failed" and run["attempts"] == 1
    assert (
        run["error"]["type"] == "NonRetryableError" and "injected failure 1 of 1" in run["error"]["message"]
    )


def test_crash_after_a_journaled_step_resumes_after_it(stack: Stack) -> None:
    stack.crash_after_step("first")
    run = published_run(stack, "tt-steps", "tt/steps", {})
    assert run["status"] == "completed" and run["attempts"] == 2
    assert run["result"]["attempt"] == 2
    assert [(s["key"], s["attempts"]) for s in run["steps"]] == [("first", 1), ("second", 1)]
    assert calls == {"first": 1, "second": 1}


def test_poison_event_fails_its_run_and_is_dead_lettered(stack: Stack) -> None:
    run = published_run(stack, "tt-poison", "tt/poison", {"bad": True})
    assert run["status"] == "failed" and run["attempts"] == 2  # the stack's max_attempts
    assert run["error"] == {"type": "RuntimeError", "message": "never works"}
    (letter,) = stack.dead_letters("tt-poison")
    assert letter["event"]["id"] == run["trigger"]["event_ids"][0]


def test_batch_windows_are_skipped_or_honoured(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []  # the pauses of the mappings while they wait out a batching window

    def recorded(pause: Callable[[float], Any]) -> Callable[[float], Any]:
        def wait(seconds: float) -> Any:
            waits.append(seconds)
            return pause(seconds)

        return wait

    for mapping in stack._local.mappings:
        monkeypatch.setattr(mapping, "_pause", recorded(mapping._pause))
    stack.publish("tt/batch", [{"data": {"i": i}} for i in range(2)])
    stack.drain()
    assert waits == []  # skipped: the 2 events go at once, without waiting (not timed: busy machines vary)
    stack.publish("tt/batch", [{"data": {"i": i}} for i in range(2, 9)])
    started = time.monotonic()
    stack.drain(skip_batch_windows=False)
    assert time.monotonic() - started >= 1  # honoured: the 2 left after a full batch wait their window
    assert waits  # and the recorder sees that wait, so the empty list above means none happened
    sizes = sorted(run["result"] for run in stack.runs("tt-batch"))
    assert sizes == [2, 2, 5]


def test_invoke_with_a_model_and_api_errors(stack: Stack) -> None:
    run_id = stack.invoke(greet, Greeting(name="Ada"))
    stack.drain()
    run = stack.run(run_id)
    assert (run["status"], run["result"], run["trigger"]["type"]) == ("completed", "hello Ada", "invoke")
    with pytest.raises(PolosAPIError) as refused:
        stack.invoke("no-such-workflow")
    assert (refused.value.status, refused.value.error_type) == (404, "not_found")
    assert stack.request("GET", "/api/v1/runs", headers={"Authorization": "Bearer nope"}).status == 401


def test_works_inside_an_event_loop(stack: Stack) -> None:
    async def scenario() -> dict[str, Any]:
        stack.fail_step("first", times=1)
        event_id = stack.publish("tt/steps", [{"data": {}}])["events"][0]["id"]
        stack.drain()  # the worker runs its own loop: on a helper thread here
        return next(run for run in stack.runs("tt-steps") if event_id in run["trigger"]["event_ids"])

    run = asyncio.run(scenario())
    assert run["status"] == "completed"
    assert run["steps"][0]["attempts"] == 2


def test_injected_failure_is_an_exception() -> None:
    assert issubclass(InjectedFailure, Exception)


def test_environment_is_restored_and_stacks_are_isolated() -> None:
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    with local_stack(APP) as first:
        first.publish("tt/steps", [{"data": {}}])
        assert os.environ["POLOS_QUEUE_URL_PREFIX"].endswith("-")
    with local_stack(APP) as second:
        assert second.runs() == [] and second.events("tt/steps") == []
    assert {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} == before


def test_importing_polos_testing_loads_neither_moto_nor_infra() -> None:
    code = (
        "import sys, polos.testing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('moto', 'infra')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""``max_attempts``: the executions of a workflow's code that may fail in a row for one message.

The number a user sets is the number of times the code runs: then the run is ``failed`` and its message
dead-lettered. A workflow's own ``max_attempts`` wins over the deployment's; an execution that ends well
(here: a durable wait) starts the next message's count afresh, and so does a redrive; a receive that
executes nothing (a duplicate turned away while another attempt holds the run) does not count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.errors import WorkflowDefinitionError
from polos.runtime.journal import Acquired, Journal, NotAcquired
from polos.testing import Stack, local_stack

calls: dict[str, int] = {}


def count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@workflow(id="ma-poison", trigger_on_event="ma/poison")
async def poison(ctx: WorkflowContext, payload: EventPayload) -> None:
    count("poison")
    raise RuntimeError("never works")


@workflow(id="ma-own", max_attempts=4)
async def own(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    count("own")
    raise RuntimeError("never works either")


@workflow(id="ma-flaky")
async def flaky(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """Fails once before its wait and once after it: never twice in a row for one message."""
    call = count("flaky")
    if call == 1:
        raise RuntimeError("first try")
    await ctx.step.wait_for("nap", hours=1)
    if call == 3:
        raise RuntimeError("first try after the wake-up")
    return "done"


APP = App("max-attempts", [poison, own, flaky])
DEPLOYMENT_MAX_ATTEMPTS = 2


@pytest.fixture(scope="module")
def module_stack() -> Iterator[Stack]:
    with local_stack(APP, max_attempts=DEPLOYMENT_MAX_ATTEMPTS) as stack:
        yield stack


@pytest.fixture
def stack(module_stack: Stack) -> Stack:
    calls.clear()
    return module_stack


def test_the_deployments_max_attempts_is_the_number_of_executions(stack: Stack) -> None:
    stack.publish("ma/poison", [{"data": {}}])
    stack.drain()
    (run,) = stack.runs("ma-poison")
    assert calls == {"poison": DEPLOYMENT_MAX_ATTEMPTS}
    assert run["status"] == "failed" and run["attempts"] == DEPLOYMENT_MAX_ATTEMPTS
    assert run["error"] == {"type": "RuntimeError", "message": "never works"}
    letters = stack.dead_letters("ma-poison")
    (letter,) = distinct(letters)
    assert letter["event"]["id"] == run["trigger"]["event_ids"][0]

    # a redrive starts a fresh count: the code runs max_attempts times again
    moved = stack.request("POST", "/api/v1/workflows/ma-poison/dead-letters/redrive")
    assert moved.status == 200 and moved.body == {"moved": len(letters)}
    stack.drain()
    assert calls == {"poison": 2 * DEPLOYMENT_MAX_ATTEMPTS}
    assert stack.run(run["run_id"])["status"] == "failed"
    assert distinct(stack.dead_letters("ma-poison")) == [letter]


def distinct(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dead letters without their copies: under the ``duplicates`` fault (make chaos) a copy of a
    delivery may be dead-lettered too, the same message for the same run (polos.runtime.dead_letters)."""
    return list({json.dumps(letter, sort_keys=True): letter for letter in letters}.values())


def test_a_workflows_own_max_attempts_wins(stack: Stack) -> None:
    run_id = stack.invoke("ma-own", {})
    stack.drain()
    run = stack.run(run_id)
    assert calls == {"own": 4} and run["status"] == "failed" and run["attempts"] == 4
    assert [letter["run_id"] for letter in stack.dead_letters("ma-own")] == [run_id]


def test_an_execution_that_ends_well_starts_the_next_messages_count_afresh(stack: Stack) -> None:
    run_id = stack.invoke("ma-flaky", {})
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"
    stack.advance(hours=2)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == "done", run
    assert calls == {"flaky": 4}  # two failures in all, never two in a row for one message
    assert stack.dead_letters("ma-flaky") == []


def test_max_attempts_is_checked_at_decoration() -> None:
    for wrong, rule in [(0, "out of range"), (26, "out of range"), (True, "must be an integer")]:
        with pytest.raises(WorkflowDefinitionError, match=rf"'ma-bad': max_attempts.*{rule}"):

            @workflow(id="ma-bad", max_attempts=wrong)
            async def bad(ctx: WorkflowContext) -> None: ...


@workflow(id="ma-probe")
async def probe(ctx: WorkflowContext) -> None:
    return None


@pytest.fixture
def journal(provision_app: Callable[..., Any]) -> Journal:
    provision_app(App("ma-journal", [probe]))
    return Journal()


def take(journal: Journal, owner: str) -> Acquired | NotAcquired:
    return journal.acquire(
        run_id="run_ma",
        workflow_id="ma-probe",
        trigger_type="event",
        event_refs=[],
        owner=owner,
        lease_seconds=60,
        now=time.time(),
    )


def test_a_duplicate_turned_away_does_not_count(journal: Journal) -> None:
    first = take(journal, "a")
    assert isinstance(first, Acquired) and first.run.message_attempts == 1
    duplicate = take(journal, "b")  # another receive while the first execution holds the lease
    assert isinstance(duplicate, NotAcquired) and duplicate.outcome == "busy"
    loaded = journal.load("run_ma")
    assert loaded is not None and loaded.run.message_attempts == 1
    journal.finish("run_ma", "a", "queued")  # that execution failed: the next one is the second
    again = take(journal, "c")
    assert isinstance(again, Acquired) and again.run.message_attempts == 2
    journal.finish("run_ma", "c", "waiting")  # it ended well: the count starts afresh
    loaded = journal.load("run_ma")
    assert loaded is not None and loaded.run.message_attempts == 0

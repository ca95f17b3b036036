"""The last completed step's journal entry is written with the run's outcome, in the same UpdateItem; every
reader (the runs API, a replay) sees it as a step; a run item that would pass its budget gets a step item."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.runs import kept_steps, step_items, store_invoked
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import runs
from polos.runtime.executor import Attempt, execute
from polos.runtime.journal import Journal, run_pk

CALLS: Counter[str] = Counter()
FAIL_AFTER: set[str] = set()  # run ids whose workflow raises once after its steps


def step(key: str, size: int = 0) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        CALLS[key] += 1
        return {"key": key, "pad": "x" * size}

    return call


@workflow(id="lso-two")
async def two_steps(ctx: WorkflowContext, payload: dict[str, Any]) -> list[str]:
    a = await ctx.step.run("a", step("a", payload.get("pad", 0)))
    if ctx.run_id in FAIL_AFTER:
        FAIL_AFTER.discard(ctx.run_id)
        raise RuntimeError("fails once after step a")
    b = await ctx.step.run("b", step("b", payload.get("pad", 0)))
    return [a["key"], b["key"]]


@pytest.fixture
def app(provision_app: Callable[..., Any]) -> Iterator[None]:
    provision_app(App("last-step", [two_steps]))
    CALLS.clear()
    FAIL_AFTER.clear()
    yield


class Writes:
    """The DynamoDB write operations of the process-wide client, with their parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        settings.dynamodb().meta.events.register("provide-client-params.dynamodb.*", self._seen)

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params))

    def ops(self) -> list[str]:
        return [name for name, _ in self.calls]


def attempt(run_id: str) -> Any:
    return asyncio.run(execute(Attempt(two_steps, run_id, "invoke")))


def test_the_last_step_is_journaled_by_the_outcomes_update_and_shown_as_a_step(app: None) -> None:
    store_invoked(two_steps.id, "run_lso1", {})
    writes = Writes()
    result = attempt("run_lso1")
    assert (result.outcome, result.result) == ("completed", ["a", "b"])
    # lease, step a (kept in the run item when b starts), the outcome with step b
    assert writes.ops() == ["UpdateItem", "UpdateItem", "UpdateItem"]
    assert step_items("run_lso1") == [] and kept_steps("run_lso1") == ["step#a", "step#b"]
    view = runs.get_run("run_lso1")
    assert view is not None
    assert [(s["key"], s["status"], s["result"]["key"]) for s in view["steps"]] == [
        ("a", "completed", "a"),
        ("b", "completed", "b"),
    ]
    assert runs.get_run("run_lso1", step_key="b")["steps"][0]["result"]["key"] == "b"  # type: ignore[index]


def test_a_retried_run_replays_the_step_kept_with_an_earlier_outcome(app: None) -> None:
    store_invoked(two_steps.id, "run_lso2", {})
    FAIL_AFTER.add("run_lso2")
    assert attempt("run_lso2").outcome == "retry"  # step a is kept with the ``queued`` outcome
    assert step_items("run_lso2") == []
    result = attempt("run_lso2")
    assert (result.outcome, result.result) == ("completed", ["a", "b"])
    assert CALLS == {"a": 1, "b": 1}  # a journaled step never runs again
    loaded = Journal().load("run_lso2")
    assert loaded is not None and [s.key for s in loaded.steps] == ["a", "b"]
    assert [s.attempts for s in loaded.steps] == [1, 1]
    # Replayed once more (a lost finish, say): nothing runs, both steps come from the run item.
    settings.dynamodb().update_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk("run_lso2")}, "sk": {"S": "run"}},
        UpdateExpression="SET #s = :q",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": {"S": "queued"}},
    )
    assert attempt("run_lso2").result == ["a", "b"] and CALLS == {"a": 1, "b": 1}


def test_a_step_that_would_push_the_run_item_past_its_budget_gets_its_own_item(app: None) -> None:
    # payload ~200 KB + result ~2 KB + step b ~200 KB: past RUN_ITEM_BUDGET (360 KB) together
    store_invoked(two_steps.id, "run_lso3", {"pad": 190 * 1024, "ballast": "y" * (200 * 1024)})
    writes = Writes()
    result = attempt("run_lso3")
    assert result.outcome == "completed"
    assert step_items("run_lso3") == ["step#a", "step#b"]
    outcome = [params for name, params in writes.calls if name == "UpdateItem"][-1]
    assert "#step" not in outcome.get("ExpressionAttributeNames", {})
    view = runs.get_run("run_lso3")
    assert view is not None and [s["key"] for s in view["steps"]] == ["a", "b"]
    assert json.dumps(view["result"]) == json.dumps(["a", "b"])

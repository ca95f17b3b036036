"""A completed step is journaled by the attempt's next write (the next step, a wait, the outcome), and at
the latest ``PENDING_FLUSH_SECONDS`` after it returned while the workflow goes on doing nothing durable: a
crash in that window re-runs the step (at-least-once, as a crash between a step's return and its own write),
a crash after it never does; every reader sees the step either way."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.runs import kept_steps, step_items, store_invoked
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import runs
from polos.runtime import steps as step_runtime
from polos.runtime.executor import Attempt, AttemptResult, execute
from polos.runtime.journal import Journal, run_pk

CALLS: Counter[str] = Counter()
JOURNALED: dict[tuple[str, str], float] = {}  # (run id, step key) -> time.monotonic() when journaled
RETURNED: dict[str, float] = {}  # run id -> time.monotonic() when step a returned
SEEN: dict[str, asyncio.Event] = {}  # run id -> set once its step a is journaled
LONGEST_WAIT = 4.0  # the workflow's own look for its step's journal entry gives up after this


class Crash(BaseException):
    """A Lambda dying mid-invocation: nothing after it runs, not even the executor's clean-up."""


class Seen:
    """The step hooks: when each step was journaled."""

    def before_call(self, run_id: str, key: str, call: int) -> None:
        pass

    def after_journal(self, run_id: str, key: str) -> None:  # on the attempt's event loop
        JOURNALED.setdefault((run_id, key), time.monotonic())
        if run_id in SEEN:
            SEEN[run_id].set()


def call(key: str) -> Callable[[], str]:
    def step() -> str:
        CALLS[key] += 1
        return key.upper()

    return step


@workflow(id="pending-then-more")
async def step_then_more_code(ctx: WorkflowContext, payload: Any) -> dict[str, Any]:
    """Step ``a``, then code that goes on without a durable call until ``a`` is journaled (or gives up)."""
    a = await ctx.step.run("a", call("a"))
    RETURNED.setdefault(ctx.run_id, time.monotonic())
    seen = SEEN[ctx.run_id] = asyncio.Event()
    if (ctx.run_id, "a") not in JOURNALED:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), LONGEST_WAIT)  # the very state the test asserts
    return {"a": a, "journaled_meanwhile": (ctx.run_id, "a") in JOURNALED}


@pytest.fixture
def app(provision_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(settings.ENV_LEASE_SECONDS, "8")
    settings.reset()
    provision_app(App("pending-flush", [step_then_more_code]))
    CALLS.clear()
    JOURNALED.clear()
    RETURNED.clear()
    SEEN.clear()
    step_runtime.set_step_hooks(Seen())
    yield
    step_runtime.set_step_hooks(None)


class Requests:
    """The process-wide DynamoDB client's requests. ``crash(n, before=...)`` dies once, right before the n-th
    request is sent (it never takes effect) or right after it took effect."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._crash: tuple[int, bool] | None = None
        self._lock = threading.Lock()
        events = settings.dynamodb().meta.events
        events.register("before-call.dynamodb.*", self._before)
        events.register("after-call.dynamodb.*", self._after)

    def crash(self, n: int, *, before: bool) -> None:
        self._crash = (n, before)

    def _die_at(self, n: int, before: bool, name: str) -> None:
        if self._crash == (n, before):
            self._crash = None
            raise Crash(f"died {'before' if before else 'after'} request {n} ({name})")

    def _before(self, model: Any, **_: Any) -> None:
        with self._lock:
            self._die_at(len(self.names) + 1, True, model.name)

    def _after(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.names.append(model.name)
            self._die_at(len(self.names), False, model.name)

    def close(self) -> None:
        events = settings.dynamodb().meta.events
        events.unregister("before-call.dynamodb.*", self._before)
        events.unregister("after-call.dynamodb.*", self._after)


def attempt(run_id: str) -> AttemptResult:
    return asyncio.run(execute(Attempt(step_then_more_code, run_id, "invoke")))


def lapse_lease(run_id: str) -> None:
    """The crashed attempt's lease ends now (as it would after its lease seconds)."""
    settings.dynamodb().update_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": "run"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )


def test_a_step_followed_by_more_code_is_journaled_within_the_bound(app: None) -> None:
    store_invoked(step_then_more_code.id, "run_pf1", {})
    requests = Requests()
    try:
        result = attempt("run_pf1")
    finally:
        requests.close()
    assert (result.outcome, result.result) == ("completed", {"a": "A", "journaled_meanwhile": True})
    late = JOURNALED[("run_pf1", "a")] - RETURNED["run_pf1"]
    assert late <= step_runtime.PENDING_FLUSH_SECONDS + 0.5, late
    # lease, step a kept in the run item on its own (the workflow went on), the outcome without it
    assert requests.names == ["UpdateItem", "UpdateItem", "UpdateItem"]
    assert step_items("run_pf1") == [] and kept_steps("run_pf1") == ["step#a"]
    view = runs.get_run("run_pf1")
    assert view is not None and [(s["key"], s["result"]) for s in view["steps"]] == [("a", "A")]


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_a_crash_at_each_request_re_runs_the_step_only_before_its_journal_write(
    app: None, before: bool
) -> None:
    store_invoked(step_then_more_code.id, "run_pf_probe", {})
    probe = Requests()
    try:
        assert attempt("run_pf_probe").outcome == "completed"
    finally:
        probe.close()
    points = probe.names
    assert points == ["UpdateItem", "UpdateItem", "UpdateItem"]  # lease, step a (late, kept), outcome
    for n, point in enumerate(points, start=1):
        run_id = f"run_pf_{n}_{before}"
        store_invoked(step_then_more_code.id, run_id, {})
        CALLS.clear()
        requests = Requests()
        requests.crash(n, before=before)
        try:
            with pytest.raises(Crash):
                attempt(run_id)
        finally:
            requests.close()
        step_ran = n >= 2  # the lease's write comes before the step's call
        journaled = n > 2 or (n == 2 and not before)
        lapse_lease(run_id)
        result = attempt(run_id)
        ended = n == 3 and not before  # the outcome took effect: the next delivery finds the run finished
        assert result.outcome == ("finished" if ended else "completed"), (n, point, result)
        # at-least-once in the deferred window (the step returned, its journal write not taken), else once
        assert {"a": 2 if step_ran and not journaled else 1} == CALLS, (n, point, before, CALLS)
        loaded = Journal().load(run_id)
        assert loaded is not None and loaded.run.status == "completed"
        assert [(s.key, s.status) for s in loaded.steps] == [("a", "completed")]
        view = runs.get_run(run_id)
        assert view is not None and [(s["key"], s["result"]) for s in view["steps"]] == [("a", "A")]

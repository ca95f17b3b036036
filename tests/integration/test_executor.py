"""One attempt of one run, on moto: replay, failure, leases, concurrency and injected crashes."""

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from helpers.runs import store_invoked
from moto.dynamodb.responses import DynamoHandler
from polos import EventPayload, NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.definition import Workflow
from polos.runtime.executor import Attempt, AttemptResult, execute
from polos.runtime.journal import Journal, index_partition, run_pk
from polos.runtime.records import EventRef, RunRecord
from polos.runtime.steps import set_step_hooks
from pydantic import BaseModel

CALLS: Counter[str] = Counter()
FAIL_ONCE: set[str] = set()  # step names whose next call fails


class Account(BaseModel):
    id: str
    plan: str


def effect(name: str, value: Any) -> Callable[[], Any]:
    """A step function that counts its calls and fails once when ``name`` is in FAIL_ONCE."""

    def call() -> Any:
        CALLS[name] += 1
        if name in FAIL_ONCE:
            FAIL_ONCE.discard(name)
            raise RuntimeError(f"{name} failed")
        return value

    return call


def open_account() -> Account:
    CALLS["open"] += 1
    return Account(id="acc_1", plan="pro")


def charge(account_id: str, *, cents: int) -> dict[str, Any]:
    CALLS["charge"] += 1
    if "charge" in FAIL_ONCE:
        FAIL_ONCE.discard("charge")
        raise RuntimeError("card network down")
    return {"account": account_id, "cents": cents}


@workflow(id="two-steps")
async def two_steps(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    account = await ctx.step.run("open", open_account)
    receipt = await ctx.step.run("charge", charge, account.id, cents=payload["cents"], max_retries=0)
    return {"account": account.id, "plan": account.plan, "receipt": receipt, "attempt": ctx.attempt}


@workflow(id="falsy-results")
async def falsy_results(ctx: WorkflowContext) -> list[Any]:
    values = [
        await ctx.step.run(f"v{i}", effect(f"v{i}", v)) for i, v in enumerate([0, "", [], {}, False, None])
    ]
    await ctx.step.run("gate", effect("gate", True), max_retries=0)
    return values


class Order(BaseModel):
    order_id: str
    total: float


@workflow(id="typed-payload")
async def typed_payload(ctx: WorkflowContext, order: Order) -> str:
    CALLS["typed-handler"] += 1
    return order.order_id


@workflow(id="gives-up")
async def gives_up(ctx: WorkflowContext) -> None:
    await ctx.step.run("before", effect("before", 1))
    raise NonRetryableError("the account is closed")


@workflow(id="reuses-key")
async def reuses_key(ctx: WorkflowContext) -> None:
    await ctx.step.run("same", effect("same-1", 1))
    await ctx.step.run("same", effect("same-2", 2))


@workflow(id="always-fails")
async def always_fails(ctx: WorkflowContext) -> None:
    await ctx.step.run("flaky", effect("flaky", 1), max_retries=0)


@workflow(id="huge-result")
async def huge_result(ctx: WorkflowContext) -> str:
    return "x" * 400_000


@workflow(id="on-event", trigger_on_event="shop.orders")
async def on_event(ctx: WorkflowContext, payload: EventPayload) -> dict[str, Any]:
    now = await ctx.step.now("now")
    return {
        "workflow_id": ctx.workflow_id,
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "created_at": ctx.created_at.isoformat(),
        "topic": payload.topic,
        "data": payload.data,
        "now_is_ms": isinstance(now, int) and abs(now / 1000 - time.time()) < 600,
    }


@workflow(id="steps-a-b")
async def steps_a_b(ctx: WorkflowContext) -> list[str]:
    return [await ctx.step.run("a", effect("a", "A")), await ctx.step.run("b", effect("b", "B"))]


def b_then_crash_once() -> str:
    value = effect("b", "B")()
    if CALLS["b"] == 1:
        raise Crash("died after b's effect, before its result was journaled")
    return str(value)


@workflow(id="b-dies-once")
async def b_dies_once(ctx: WorkflowContext) -> list[str]:
    return [await ctx.step.run("a", effect("a", "A")), await ctx.step.run("b", b_then_crash_once)]


SLOW_STEP_RELEASE = threading.Event()
SLOW_STEP_STARTED = threading.Event()


def slow_once() -> str:
    """Blocks its first call until released (a step outliving its attempt's lease)."""
    CALLS["slow"] += 1
    if CALLS["slow"] == 1:
        SLOW_STEP_STARTED.set()
        assert SLOW_STEP_RELEASE.wait(30)
    return "S"


@workflow(id="slow-then-next")
async def slow_then_next(ctx: WorkflowContext) -> list[str]:
    return [await ctx.step.run("slow", slow_once), await ctx.step.run("next", effect("next", "N"))]


class Crash(BaseException):
    """A Lambda dying mid-invocation: nothing after it runs, not even the executor's clean-up."""


APP = App(
    "executor-tests",
    [
        two_steps,
        falsy_results,
        typed_payload,
        gives_up,
        reuses_key,
        always_fails,
        huge_result,
        on_event,
        steps_a_b,
        b_dies_once,
        slow_then_next,
    ],
)


@pytest.fixture
def runs(provision_app: Callable[..., Any]) -> Iterator[Journal]:
    provision_app(APP)
    CALLS.clear()
    FAIL_ONCE.clear()
    yield Journal()
    set_step_hooks(None)


def attempt(wf: Workflow, run_id: str, payload: Any = None, **options: Any) -> AttemptResult:
    trigger_type = options.pop("trigger_type", "invoke")
    if trigger_type == "invoke":
        store_invoked(wf.id, run_id, payload)
    return asyncio.run(execute(Attempt(wf, run_id, trigger_type, payload=payload, **options)))


def run_item(run_id: str) -> dict[str, Any]:
    item = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": "run"}},
        ConsistentRead=True,
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


# ---- replay across attempts ------------------------------------------------------------------------


def test_a_retried_run_skips_its_journaled_steps(runs: Journal) -> None:
    FAIL_ONCE.add("charge")
    first = attempt(two_steps, "r1", {"cents": 500})
    assert first.outcome == "retry"
    assert first.error is not None and first.error.type == "StepExecutionError"
    assert "card network down" in first.error.message
    assert CALLS == {"open": 1, "charge": 1}

    second = attempt(two_steps, "r1", {"cents": 500})
    assert second.outcome == "completed"
    assert CALLS == {"open": 1, "charge": 2}  # step 1's journaled value was returned without calling it
    assert second.result == {
        "account": "acc_1",  # `account.id` works on the replayed model
        "plan": "pro",
        "receipt": {"account": "acc_1", "cents": 500},
        "attempt": 2,
    }
    loaded = runs.load("r1")
    assert loaded is not None
    assert [(s.key, s.status, s.attempts) for s in loaded.steps] == [
        ("open", "completed", 1),
        ("charge", "completed", 2),
    ]


def test_completed_runs_are_never_executed_again(runs: Journal) -> None:
    assert attempt(two_steps, "r1", {"cents": 1}).outcome == "completed"
    before = run_item("r1")
    for _ in range(2):
        again = attempt(two_steps, "r1", {"cents": 1})
        assert again.outcome == "finished" and again.run is not None and again.run.status == "completed"
    assert CALLS == {"open": 1, "charge": 1}
    assert run_item("r1") == before


def test_falsy_step_results_replay_faithfully(runs: Journal) -> None:
    FAIL_ONCE.add("gate")
    assert attempt(falsy_results, "r1").outcome == "retry"
    result = attempt(falsy_results, "r1")
    assert result.outcome == "completed"
    assert result.result == [0, "", [], {}, False, None]
    assert all(CALLS[f"v{i}"] == 1 for i in range(6)) and CALLS["gate"] == 2


def test_a_stale_read_never_re_runs_a_journaled_step(runs: Journal) -> None:
    """An attempt that read the journal before another attempt ran must not trust that read."""
    stale = runs.query_partition("r1")  # read before the first attempt journals anything
    FAIL_ONCE.add("charge")
    assert attempt(two_steps, "r1", {"cents": 5}).outcome == "retry"
    late = attempt(two_steps, "r1", {"cents": 5}, preloaded=stale)
    assert late.outcome == "completed"
    assert CALLS == {"open": 1, "charge": 2}


def test_two_concurrent_attempts_execute_each_step_once(
    runs: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB applies each conditional write atomically; moto in-process does not lock, so serialise its
    # request handling to give the two threads DynamoDB's semantics.
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def atomic(self: DynamoHandler) -> Any:
        with lock:
            return call_action(self)

    monkeypatch.setattr(DynamoHandler, "call_action", atomic)
    barrier = threading.Barrier(2, timeout=10)

    class Overlapping(Journal):
        def acquire(self, **kwargs: Any) -> Any:
            barrier.wait()  # both attempts ask for the lease at once (lease first: nothing read before)
            taken = super().acquire(**kwargs)
            # ... and both have their answer before either runs a step: on a slow machine the winner could
            # otherwise finish the run before the other's request, which then meets a finished run, not a
            # held lease (an outcome of "finished", also correct, but not the overlap this test is about).
            barrier.wait()
            return taken

    outcomes: list[str] = []
    store_invoked(two_steps.id, "r1", {"cents": 9})

    def deliver() -> None:
        result = asyncio.run(execute(Attempt(two_steps, "r1", "invoke", payload={"cents": 9}), Overlapping()))
        outcomes.append(result.outcome)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["busy", "completed"]
    assert CALLS == {"open": 1, "charge": 1}
    assert run_item("r1")["attempts"] == "1"  # the delivery turned away is not counted


# ---- failing runs ----------------------------------------------------------------------------------


def test_invalid_payload_fails_the_run_at_once(runs: Journal) -> None:
    result = attempt(typed_payload, "r1", {"order_id": "o1", "total": "lots"})
    assert result.outcome == "failed"
    assert result.error is not None and result.error.type == "PayloadValidationError"
    assert result.error.message == (
        "payload of workflow 'typed-payload' is invalid: payload.total: Input should be a valid number, "
        "unable to parse string as a number"
    )
    assert CALLS["typed-handler"] == 0
    item = run_item("r1")
    assert item["status"] == "failed" and item["attempts"] == "1"
    assert json.loads(item["error"])["type"] == "PayloadValidationError"


def test_valid_payload_is_built_into_the_model(runs: Journal) -> None:
    result = attempt(typed_payload, "r1", {"order_id": "o1", "total": "9.5"})
    assert (result.outcome, result.result) == ("completed", "o1")


def test_non_retryable_error_fails_the_run_at_once(runs: Journal) -> None:
    result = attempt(gives_up, "r1")
    assert result.outcome == "failed"
    assert result.error is not None and (result.error.type, result.error.message) == (
        "NonRetryableError",
        "the account is closed",
    )
    assert attempt(gives_up, "r1").outcome == "finished"
    assert CALLS == {"before": 1}


def test_a_reused_step_key_fails_the_run_at_once(runs: Journal) -> None:
    result = attempt(reuses_key, "r1")
    assert result.outcome == "failed"
    assert result.error is not None and result.error.type == "StepKeyReusedError"
    assert "step key 'same' is used twice" in result.error.message
    assert CALLS == {"same-1": 1}


def test_failures_retry_until_the_final_attempt_marks_the_run_failed(runs: Journal) -> None:
    for expected_attempt in (1, 2):
        FAIL_ONCE.add("flaky")
        result = attempt(always_fails, "r1")
        assert result.outcome == "retry"
        item = run_item("r1")
        assert item["status"] == "queued" and item["attempts"] == str(expected_attempt)
        assert "lease_owner" not in item and "lease_until" not in item
    FAIL_ONCE.add("flaky")
    final = attempt(always_fails, "r1", final=True)
    assert final.outcome == "exhausted"  # failed, and its message is left for the dead-letter queue
    item = run_item("r1")
    assert item["status"] == "failed" and item["attempts"] == "3"
    assert json.loads(item["error"]) == {
        "type": "StepExecutionError",
        "message": "step 'flaky' failed after 1 attempt(s): RuntimeError: flaky failed",
    }
    loaded = runs.load("r1")
    assert loaded is not None
    step = loaded.steps[0]
    assert (step.status, step.attempts) == ("failed", 3)
    assert step.error is not None and (step.error.type, step.error.message) == (
        "RuntimeError",
        "flaky failed",
    )
    # a later delivery runs nothing: the spent run's message still belongs in the dead-letter queue
    assert attempt(always_fails, "r1").outcome == "exhausted"
    assert CALLS["flaky"] == 3


def test_a_result_too_big_to_journal_fails_the_run_naming_the_workflow(runs: Journal) -> None:
    result = attempt(huge_result, "r1")
    assert result.outcome == "failed"
    assert result.error is not None and result.error.type == "StepResultError"
    assert result.error.message.startswith("result of workflow 'huge-result' is 400002 bytes serialised")


# ---- the run item ----------------------------------------------------------------------------------


def test_completed_run_item_fields(runs: Journal) -> None:
    started = time.time()
    result = attempt(two_steps, "r1", {"cents": 3})
    assert result.outcome == "completed"
    assert result.run is not None and result.run.status == "completed" and result.run.lease_owner is None
    item = run_item("r1")
    assert item["status"] == "completed" and item["attempts"] == "1"
    assert item["wf"] == index_partition("two-steps", "r1")
    assert item["trigger_type"] == "invoke"
    assert json.loads(item["result"]) == result.result
    assert "error" not in item and "lease_owner" not in item and "lease_until" not in item
    created = datetime.fromisoformat(item["created_at"])
    updated = datetime.fromisoformat(item["updated_at"])
    assert item["created_at"].endswith("Z") and started - 5 < created.timestamp() <= updated.timestamp()
    retention = settings.get_settings().retention_seconds
    assert abs(float(item["expires_at"]) - (started + retention)) < 60


def test_event_run_sees_its_event_and_context(runs: Journal) -> None:
    event = {
        "id": "evt_9",
        "sequence_id": 4,
        "topic": "shop/orders",
        "event_type": None,
        "data": {"order_id": "o9"},
        "created_at": "2025-01-28T10:30:00Z",
    }
    ref = EventRef("shop/orders", 4, "evt_9")
    result = attempt(on_event, "run-evt", event, trigger_type="event", event_refs=[ref])
    assert result.outcome == "completed"
    out = result.result
    assert (out["workflow_id"], out["run_id"], out["attempt"]) == ("on-event", "run-evt", 1)
    assert (out["topic"], out["data"], out["now_is_ms"]) == ("shop/orders", {"order_id": "o9"}, True)
    assert out["created_at"].endswith("+00:00")
    loaded = runs.load("run-evt")
    assert loaded is not None and loaded.run.event_refs == [ref] and loaded.run.trigger_type == "event"


def test_invoked_run_reads_its_payload_from_the_run_item(runs: Journal) -> None:
    stamp = "2025-01-01T00:00:00Z"
    queued = RunRecord("inv-1", "typed-payload", "queued", 0, "invoke", stamp, stamp)
    queued.payload_json = json.dumps({"order_id": "from-store", "total": 1})
    runs.create_queued(queued)
    result = asyncio.run(execute(Attempt(typed_payload, "inv-1", "invoke")))
    assert (result.outcome, result.result) == ("completed", "from-store")
    assert run_item("inv-1")["created_at"] == stamp


# ---- crashes: a journaled step never runs again, an interrupted one runs again ---------------------


class CrashAt:
    def __init__(self, *, before_call: str | None = None, after_journal: str | None = None) -> None:
        self.before, self.after = before_call, after_journal

    def before_call(self, run_id: str, key: str, call: int) -> None:
        if key == self.before:
            self.before = None
            raise Crash(f"died before calling {key}")

    def after_journal(self, run_id: str, key: str) -> None:
        if key == self.after:
            self.after = None
            raise Crash(f"died after journaling {key}")


@pytest.fixture
def short_lease(runs: Journal, monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv(settings.ENV_LEASE_SECONDS, "2")  # leaves 1.8 s to call steps (margin 0.2 s)
    settings.reset()
    return runs


def wait_for_lease_to_lapse(run_id: str) -> None:
    lease_until = float(run_item(run_id)["lease_until"])
    deadline = time.time() + 10
    while time.time() <= lease_until:  # poll the condition the next acquire checks
        assert time.time() < deadline
        time.sleep(0.05)


def test_a_step_journaled_before_a_crash_never_runs_again(short_lease: Journal) -> None:
    set_step_hooks(CrashAt(after_journal="a"))
    with pytest.raises(Crash):
        attempt(steps_a_b, "r1")
    assert run_item("r1")["status"] == "running"  # the lease is left behind
    assert attempt(steps_a_b, "r1").outcome == "busy"  # a redelivery waits for it to lapse
    wait_for_lease_to_lapse("r1")
    result = attempt(steps_a_b, "r1")
    assert (result.outcome, result.result) == ("completed", ["A", "B"])
    assert CALLS == {"a": 1, "b": 1}
    assert run_item("r1")["attempts"] == "2"


def test_a_step_interrupted_before_journaling_runs_again(short_lease: Journal) -> None:
    set_step_hooks(CrashAt(before_call="b"))
    with pytest.raises(Crash):
        attempt(steps_a_b, "r1")
    wait_for_lease_to_lapse("r1")
    result = attempt(steps_a_b, "r1")
    assert (result.outcome, result.result) == ("completed", ["A", "B"])
    assert CALLS == {"a": 1, "b": 1}  # the crash came before b's first call, so b ran once in all


def test_a_step_that_ran_but_was_not_journaled_runs_again(short_lease: Journal) -> None:
    with pytest.raises(Crash):
        attempt(b_dies_once, "r1")
    wait_for_lease_to_lapse("r1")
    result = attempt(b_dies_once, "r1")
    assert (result.outcome, result.result) == ("completed", ["A", "B"])
    assert CALLS == {
        "a": 1,
        "b": 2,
    }  # at-least-once for the interrupted step, exactly once for the journaled one


def test_a_zombie_attempts_step_write_is_refused_and_it_calls_no_further_step(short_lease: Journal) -> None:
    SLOW_STEP_STARTED.clear()
    SLOW_STEP_RELEASE.clear()
    outcome: list[AttemptResult] = []
    zombie = threading.Thread(target=lambda: outcome.append(attempt(slow_then_next, "r1")))
    zombie.start()  # attempt A takes the lease and calls the slow step
    assert SLOW_STEP_STARTED.wait(10)
    wait_for_lease_to_lapse("r1")
    taken = short_lease.acquire(
        run_id="r1",
        workflow_id="slow-then-next",
        trigger_type="invoke",
        event_refs=[],
        owner="B",
        lease_seconds=60,
    )
    assert taken.outcome == "acquired"  # attempt B holds the run now
    SLOW_STEP_RELEASE.set()
    zombie.join(10)
    assert outcome and outcome[0].outcome == "busy"
    loaded = short_lease.load("r1")
    assert loaded is not None and loaded.steps == [], "the zombie's step write was refused"
    assert (loaded.run.status, loaded.run.lease_owner) == ("running", "B")
    assert CALLS == {"slow": 1}, "the zombie called no further step"

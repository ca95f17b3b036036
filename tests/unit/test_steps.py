"""``ctx.step``: calls, in-process retries, journaling and faithful replay (journal kept in memory)."""

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polos.errors import (
    NonRetryableError,
    RunLeaseLostError,
    StepExecutionError,
    StepKeyError,
    StepKeyReusedError,
    StepResultError,
)
from polos.runtime import steps
from polos.runtime.records import StepRecord
from polos.runtime.steps import MAX_LEASE_SAFETY_SECONDS, StepRunner, lease_margin, set_step_hooks
from pydantic import BaseModel


class User(BaseModel):
    id: str
    email: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


class MemoryJournal:
    """Stands in for ``polos.runtime.journal.Journal``: keeps the steps a runner journals."""

    def __init__(self) -> None:
        self.steps: dict[str, StepRecord] = {}
        self.writes = 0

    def record_step(self, run_id: str, step: StepRecord, *, fence_owner: str | None = None) -> None:
        self.writes += 1
        self.steps[step.key] = step


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Calls:
    """A step function that fails ``failures`` times (with ``error``) and then returns ``value``."""

    def __init__(self, value: Any = None, failures: int = 0, error: Exception | None = None) -> None:
        self.value, self.failures, self.error = value, failures, error or RuntimeError("boom")
        self.args: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.args.append((args, kwargs))
        if len(self.args) <= self.failures:
            raise self.error
        return self.value

    @property
    def count(self) -> int:
        return len(self.args)


_ATTEMPTS: list[tuple[StepRunner, MemoryJournal]] = []


def make_runner(
    journal: MemoryJournal, sleep: FakeSleep | None = None, lease_until: float | None = None
) -> StepRunner:
    runner = StepRunner(
        run_id="run-1",
        journal=journal,  # type: ignore[arg-type]
        steps=list(journal.steps.values()),
        lease_until=time.time() + 900 if lease_until is None else lease_until,
        sleep=sleep or FakeSleep(),
    )
    _ATTEMPTS.append((runner, journal))
    return runner


def end_attempts() -> None:
    """What the executor does when an attempt ends (its handler returned or raised): the last completed
    step, not journaled yet, is journaled with the run's outcome."""
    for runner, journal in _ATTEMPTS:
        pending = runner.take_pending()
        if pending is not None:
            journal.record_step("run-1", pending)
            steps.journaled("run-1", pending.key)
    _ATTEMPTS.clear()


def run(coro: Any) -> Any:
    try:
        result = asyncio.run(coro)
    except Exception:  # a handler's exception ends the attempt too; a crash (BaseException) does not
        end_attempts()
        raise
    end_attempts()
    return result


@pytest.fixture(autouse=True)
def _no_hooks() -> Iterator[None]:
    yield
    set_step_hooks(None)
    _ATTEMPTS.clear()


# ---- calling functions -----------------------------------------------------------------------------


def test_sync_function_with_args_and_kwargs() -> None:
    journal = MemoryJournal()

    def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    assert run(make_runner(journal).run("add", add, 2, 3, scale=10)) == 50
    step = journal.steps["add"]
    assert (step.status, step.attempts, step.result_json, step.index) == ("completed", 1, "50", 0)


def test_async_function_with_args_and_kwargs() -> None:
    journal = MemoryJournal()

    async def greet(name: str, punctuation: str = ".") -> str:
        await asyncio.sleep(0)
        return f"hi {name}{punctuation}"

    assert run(make_runner(journal).run("greet", greet, "ann", punctuation="!")) == "hi ann!"


def test_steps_are_indexed_in_first_call_order() -> None:
    journal = MemoryJournal()

    async def body(runner: StepRunner) -> None:
        for key in ("c", "a", "b"):
            await runner.run(key, str.upper, key)

    run(body(make_runner(journal)))
    assert [(s.key, s.index) for s in sorted(journal.steps.values(), key=lambda s: s.index)] == [
        ("c", 0),
        ("a", 1),
        ("b", 2),
    ]


# ---- retries ---------------------------------------------------------------------------------------


def test_retries_back_off_exponentially_with_jitter_capped_at_max_delay() -> None:
    journal, sleep = MemoryJournal(), FakeSleep()
    fn = Calls(value="ok", failures=6)
    result = run(make_runner(journal, sleep).run("flaky", fn, max_retries=6, base_delay=1.0, max_delay=5.0))
    assert result == "ok" and fn.count == 7
    bases = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]  # base * 2**n, capped at max_delay
    assert len(sleep.delays) == 6
    for delay, base in zip(sleep.delays, bases, strict=True):
        assert base / 2 <= delay <= base  # equal jitter: never below half the backoff
    assert sleep.delays[0] <= sleep.delays[1] <= sleep.delays[2]  # grows while the backoff doubles
    assert max(sleep.delays) <= 5.0
    assert any(
        delay not in (base, base / 2) for delay, base in zip(sleep.delays, bases, strict=True)
    )  # jittered
    assert journal.steps["flaky"].attempts == 7


def test_jitter_differs_between_retries_of_equal_backoff() -> None:
    sleep = FakeSleep()
    run(
        make_runner(MemoryJournal(), sleep).run(
            "f", Calls(failures=8), max_retries=8, base_delay=1, max_delay=1
        )
    )
    assert len(set(sleep.delays)) > 1


def test_max_retries_zero_means_one_call() -> None:
    journal, sleep = MemoryJournal(), FakeSleep()
    fn = Calls(failures=1, error=ValueError("bad input"))
    with pytest.raises(StepExecutionError) as caught:
        run(make_runner(journal, sleep).run("once", fn, max_retries=0))
    assert fn.count == 1 and sleep.delays == []
    assert caught.value.attempts == 1


def test_spent_retries_raise_step_execution_error_with_the_cause_chained() -> None:
    journal = MemoryJournal()
    cause = ConnectionError("smtp down")
    fn = Calls(failures=99, error=cause)
    with pytest.raises(
        StepExecutionError, match=r"^step 'send' failed after 3 attempt\(s\): ConnectionError: smtp down$"
    ) as caught:
        run(make_runner(journal).run("send", fn))  # default max_retries=2
    assert fn.count == 3
    assert caught.value.__cause__ is cause
    assert (caught.value.key, caught.value.attempts) == ("send", 3)
    step = journal.steps["send"]
    assert step.status == "failed" and step.attempts == 3
    assert step.error is not None and (step.error.type, step.error.message) == (
        "ConnectionError",
        "smtp down",
    )


def test_non_retryable_error_is_not_retried() -> None:
    journal, sleep = MemoryJournal(), FakeSleep()
    fn = Calls(failures=5, error=NonRetryableError("card declined"))
    with pytest.raises(NonRetryableError, match="card declined"):
        run(make_runner(journal, sleep).run("charge", fn, max_retries=5))
    assert fn.count == 1 and sleep.delays == []
    assert journal.steps["charge"].status == "failed"


def test_a_failed_step_runs_again_on_the_next_attempt_counting_all_calls() -> None:
    journal = MemoryJournal()
    fn = Calls(value=7, failures=1)
    with pytest.raises(StepExecutionError):
        run(make_runner(journal).run("s", fn, max_retries=0))
    assert run(make_runner(journal).run("s", fn, max_retries=0)) == 7
    step = journal.steps["s"]
    assert (step.status, step.attempts, step.index) == ("completed", 2, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, r"max_retries must be an integer >= 0"),
        ({"max_retries": 1.5}, r"max_retries must be an integer >= 0"),
        ({"max_retries": True}, r"max_retries must be an integer >= 0"),
        ({"base_delay": -1}, r"base_delay and max_delay must be >= 0"),
    ],
)
def test_bad_retry_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(make_runner(MemoryJournal()).run("s", lambda: 1, **options))


def test_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"step 's': fn must be callable, got int"):
        run(make_runner(MemoryJournal()).run("s", 42))


# ---- keys ------------------------------------------------------------------------------------------


def test_duplicate_key_is_a_clear_non_retryable_error() -> None:
    journal = MemoryJournal()
    second = Calls()

    async def body(runner: StepRunner) -> None:
        await runner.run("same", lambda: 1)
        await runner.run("same", second)

    with pytest.raises(
        StepKeyReusedError, match=r"step key 'same' is used twice in run run-1; keys must be unique"
    ):
        run(body(make_runner(journal)))
    assert second.count == 0
    assert issubclass(StepKeyReusedError, NonRetryableError)


def test_keys_are_shared_by_every_step_method() -> None:
    async def body(runner: StepRunner) -> None:
        await runner.uuid("k")
        await runner.now("k")

    with pytest.raises(StepKeyReusedError):
        run(body(make_runner(MemoryJournal())))


@pytest.mark.parametrize("key", ["", None, 5, "k" * 513])
def test_bad_keys(key: Any) -> None:
    with pytest.raises(StepKeyError, match=r"step key"):
        run(make_runner(MemoryJournal()).run(key, lambda: 1))


# ---- journaling and faithful replay ----------------------------------------------------------------


def make_user() -> User:
    return User(id="u1", email="a@b.c")


def make_users() -> list[User]:
    return [User(id="u1", email="a"), User(id="u2", email="b")]


def make_points() -> dict[str, Point]:
    return {"origin": Point(0, 0)}


def make_moment() -> dt.datetime:
    return dt.datetime(2025, 1, 28, 10, 30, tzinfo=dt.UTC)


def make_moments() -> list[dt.datetime]:
    return [make_moment(), make_moment() + dt.timedelta(seconds=5)]


def make_point() -> Point:
    return Point(1, 2)


def untyped_user():  # type: ignore[no-untyped-def]
    return User(id="u9", email="z")


def untyped_point():  # type: ignore[no-untyped-def]
    return Point(3, 4)


def untyped_users():  # type: ignore[no-untyped-def]
    return [User(id="u9", email="z")]


def replay(fn: Any, *args: Any) -> tuple[Any, Any, MemoryJournal]:
    """Run a step once, then replay it from the journal with a function that must not be called."""
    journal = MemoryJournal()
    first = run(make_runner(journal).run("k", fn, *args))

    def must_not_run(*_: Any) -> Any:
        raise AssertionError("a journaled step ran again")

    must_not_run.__annotations__ = dict(getattr(fn, "__annotations__", {}))
    writes = journal.writes
    again = run(make_runner(journal).run("k", must_not_run, *args))
    assert journal.writes == writes  # a replay writes nothing
    return first, again, journal


@pytest.mark.parametrize("value", [0, 0.0, "", [], {}, False, None])
def test_falsy_results_replay_faithfully(value: Any) -> None:
    first, again, _ = replay(lambda: value)
    assert first == again == value
    assert type(first) is type(again) is type(value)


@pytest.mark.parametrize(
    ("fn", "expected", "kind"),
    [
        (make_user, User(id="u1", email="a@b.c"), User),
        (make_users, make_users(), list),
        (make_points, {"origin": Point(0, 0)}, dict),
        (make_moment, make_moment(), dt.datetime),
        (make_moments, make_moments(), list),
        (make_point, Point(1, 2), Point),
    ],
)
def test_typed_results_are_rebuilt_by_the_return_annotation(fn: Any, expected: Any, kind: type) -> None:
    first, again, _ = replay(fn)
    assert first == again == expected
    assert isinstance(first, kind) and isinstance(again, kind)
    if isinstance(expected, list) and expected and not isinstance(expected[0], dict):
        assert [type(item) for item in again] == [type(item) for item in expected]


def test_seed_pattern_user_id_on_a_step_result() -> None:
    """``user = await ctx.step.run("create", create_user_record, input)`` then ``user.id``."""
    first, again, journal = replay(make_user)
    assert first.id == again.id == "u1"
    assert journal.steps["k"].result_tag is None  # the annotation is enough


def test_unannotated_model_and_dataclass_come_back_via_their_type_tag() -> None:
    first, again, journal = replay(untyped_user)
    assert isinstance(again, User) and first == again == User(id="u9", email="z")
    assert journal.steps["k"].result_tag == f"{User.__module__}:User"
    first, again, _ = replay(untyped_point)
    assert isinstance(again, Point) and again == Point(3, 4)


def test_unannotated_list_of_models_comes_back_as_plain_json_both_times() -> None:
    first, again, _ = replay(untyped_users)
    assert first == again == [{"id": "u9", "email": "z"}]


def test_unserialisable_result_fails_the_step_naming_it() -> None:
    journal = MemoryJournal()
    with pytest.raises(StepResultError, match=r"^result of step 'obj' is not JSON-serialisable"):
        run(make_runner(journal).run("obj", lambda: object()))
    assert journal.steps["obj"].status == "failed"


def test_oversized_result_fails_the_step_naming_it() -> None:
    journal = MemoryJournal()
    with pytest.raises(
        StepResultError, match=r"^result of step 'huge' is \d+ bytes serialised; at most 358400"
    ):
        run(make_runner(journal).run("huge", lambda: "x" * 400_000))
    step = journal.steps["huge"]
    assert step.status == "failed" and step.result_json is None
    assert step.error is not None and step.error.type == "StepResultError"


def lying_annotation() -> int:
    return "not a number"  # type: ignore[return-value]


def test_result_not_fitting_its_annotation_is_caught_before_journaling() -> None:
    journal = MemoryJournal()
    with pytest.raises(
        StepResultError, match=r"^result of step 'lie' does not fit its declared type <class 'int'>"
    ):
        run(make_runner(journal).run("lie", lying_annotation))
    assert journal.steps["lie"].status == "failed"


def test_uuid_now_random_are_journaled_and_identical_on_replay() -> None:
    journal = MemoryJournal()

    async def body(runner: StepRunner) -> tuple[str, int, float]:
        return await runner.uuid("id"), await runner.now("at"), await runner.random("r")

    first = run(body(make_runner(journal)))
    second = run(body(make_runner(journal)))
    assert first == second
    ident, moment, number = second
    assert len(ident) == 36 and ident.count("-") == 4
    assert isinstance(moment, int)  # milliseconds since the epoch, as the official SDK's
    assert abs(dt.datetime.now(dt.UTC).timestamp() * 1000 - moment) < 60_000
    assert 0 <= number < 1
    assert {key: step.status for key, step in journal.steps.items()} == dict.fromkeys(
        ("id", "at", "r"), "completed"
    )
    third = run(body(make_runner(MemoryJournal())))  # a different run draws new values
    assert third[0] != ident and third[2] != number


def test_now_journaled_as_a_datetime_before_it_answered_milliseconds_replays_as_milliseconds() -> None:
    journal = MemoryJournal()
    journal.steps["at"] = StepRecord("at", 0, "completed", 1, "", "", result_json='"2026-12-07T09:00:00Z"')
    moment = run(make_runner(journal).now("at"))
    assert moment == int(dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC).timestamp() * 1000)


# ---- lease and failure injection -------------------------------------------------------------------


def test_lease_margin_is_a_tenth_of_the_lease_at_most_five_seconds() -> None:
    assert lease_margin(900) == MAX_LEASE_SAFETY_SECONDS == 5.0
    assert lease_margin(10) == 1.0
    assert lease_margin(1) == pytest.approx(0.1)


def test_no_step_is_called_once_the_lease_is_about_to_lapse() -> None:
    fn = Calls()
    runner = StepRunner(
        run_id="r", journal=MemoryJournal(), steps=[], lease_until=time.time() + 2, lease_margin=5
    )  # type: ignore[arg-type]
    with pytest.raises(RunLeaseLostError, match=r"lease about to lapse; step 's' not called"):
        run(runner.run("s", fn))
    assert fn.count == 0


def test_a_retry_is_not_called_past_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        now = 1000.0

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(steps, "time", clock)

    async def long_pause(seconds: float) -> None:
        clock.now += 60  # the pause outlives the lease

    journal, fn = MemoryJournal(), Calls(failures=5)
    runner = StepRunner(
        run_id="r", journal=journal, steps=[], lease_until=1030, lease_margin=3, sleep=long_pause
    )  # type: ignore[arg-type]
    with pytest.raises(RunLeaseLostError):
        run(runner.run("s", fn, max_retries=5))
    assert fn.count == 1  # the retry after the pause was not made
    assert journal.steps == {}  # nothing journaled: the next holder of the lease starts the step afresh


def test_hooks_see_every_call_and_journal_write() -> None:
    seen: list[tuple[str, str, int | None]] = []

    class Recorder:
        def before_call(self, run_id: str, key: str, call: int) -> None:
            seen.append(("call", key, call))

        def after_journal(self, run_id: str, key: str) -> None:
            seen.append(("journal", key, None))

    set_step_hooks(Recorder())
    run(make_runner(MemoryJournal()).run("a", Calls(failures=1), max_retries=1))
    assert seen == [("call", "a", 1), ("call", "a", 2), ("journal", "a", None)]


def test_a_crash_is_not_journaled_and_propagates() -> None:
    class Crash(BaseException):
        pass

    def crash(*_: Any) -> None:
        raise Crash

    journal = MemoryJournal()
    with pytest.raises(Crash):
        run(make_runner(journal).run("a", crash))
    assert journal.steps == {}


def test_blocking_sync_steps_of_concurrent_runs_overlap() -> None:
    """Sync step functions run in threads: two runs' blocking steps proceed together, not one by one."""
    import threading

    both_inside = threading.Barrier(2, timeout=5)  # broken (an error) if the calls never overlap

    def blocking_call() -> str:
        both_inside.wait()
        return "done"

    async def two_runs() -> list[Any]:
        runners = [make_runner(MemoryJournal()), make_runner(MemoryJournal())]
        return await asyncio.gather(*(runner.run("io", blocking_call, max_retries=0) for runner in runners))

    assert asyncio.run(two_runs()) == ["done", "done"]


def test_async_callables_run_on_the_event_loop() -> None:
    class AsyncCallable:
        async def __call__(self) -> str:
            asyncio.get_running_loop()  # raises outside a running loop, i.e. in a worker thread
            return "ok"

    async def go() -> Any:
        return await make_runner(MemoryJournal()).run("a", AsyncCallable())

    assert asyncio.run(go()) == "ok"

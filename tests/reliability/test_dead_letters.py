"""No stranded runs, dead letters you can act on (issue 11, item 5), and their crash points.

A Lambda that dies (timeout, out of memory, crash) is a ``Died`` (a ``BaseException``) raised in the
workflow: the invocation fails, the lease stays taken until the lease clock moves past it. The queues
allow 2 attempts (max_attempts): two executions may die, the receive after them fails the run and
dead-letters its message.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api, InProcessClient
from helpers.stack import provision
from helpers.worker import Pump, publish, queue_depth
from polos import BatchEventPayload, EventPayload, NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import dead_letters
from polos.runtime.runs import event_run_id
from reliability_support import ShiftedClock

from infra.local.mapping import Delivery, drain

EXECUTIONS = 2  # max_attempts
LEASE_SECONDS = 60
dying: set[str] = set()  # workflows whose attempts die
fatal_on: dict[
    str, int
] = {}  # workflow → the attempt that raises NonRetryableError (earlier ones: retryable)
calls: Counter[str] = Counter()


class Died(BaseException):
    """The Lambda invocation ends without an outcome (nothing in the worker catches it)."""


def _maybe_die(ctx: WorkflowContext) -> None:
    calls[ctx.workflow_id] += 1
    if ctx.workflow_id in dying:
        raise Died(f"attempt {ctx.attempt} died")
    fatal = fatal_on.get(ctx.workflow_id)
    if fatal is not None:
        if ctx.attempt == fatal:
            raise NonRetryableError("no point trying again")
        raise RuntimeError(f"attempt {ctx.attempt} failed")


@workflow(id="dl-single", trigger_on_event="dl/single")
async def single(ctx: WorkflowContext, payload: EventPayload) -> int:
    _maybe_die(ctx)
    return payload.sequence_id


@workflow(id="dl-batch", trigger_on_event="dl/batch", batch_size=10, batch_timeout_seconds=1)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> int:
    _maybe_die(ctx)
    return len(payload.events)


@workflow(id="dl-invoke")
async def invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    _maybe_die(ctx)
    return payload


APP = App("dead-letters", [single, batch, invoked])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(EXECUTIONS))
    monkeypatch.setenv(settings.ENV_LEASE_SECONDS, str(LEASE_SECONDS))
    dying.clear()
    fatal_on.clear()
    calls.clear()
    yield provision(APP, tmp_path, monkeypatch, max_attempts=EXECUTIONS)


@pytest.fixture
def api(urls: dict[str, str]) -> Api:
    return Api()


class Worker:
    """The app's mappings, failures redelivered at once, a dead attempt's lease lapsing before that."""

    def __init__(self, urls: dict[str, str], clock: ShiftedClock) -> None:
        self.pump = Pump(APP, urls)
        self.clock = clock

    def drain(self, *workflow_ids: str) -> list[Delivery]:
        def lapse(delivery: Delivery) -> None:
            if delivery.failed:
                self.clock.advance(LEASE_SECONDS + 1)

        chosen = [self.pump.mappings[wf] for wf in workflow_ids or self.pump.mappings]
        return drain(chosen, redeliver_failures=True, on_delivery=lapse, timeout=60)


@pytest.fixture
def worker(urls: dict[str, str], lease_clock: ShiftedClock) -> Worker:
    return Worker(urls, lease_clock)


def dead(api: Api, workflow_id: str) -> list[dict[str, Any]]:
    answer = api("GET", f"/api/v1/workflows/{workflow_id}/dead-letters")
    assert answer.status == 200, answer.json
    return list(answer.json["dead_letters"])


def redrive(api: Api, workflow_id: str) -> int:
    answer = api("POST", f"/api/v1/workflows/{workflow_id}/dead-letters/redrive")
    assert answer.status == 200, answer.json
    assert sorted(answer.json) == ["moved"]
    return int(answer.json["moved"])


def run(api: Api, run_id: str) -> dict[str, Any]:
    answer = api("GET", f"/api/v1/runs/{run_id}")
    assert answer.status == 200, answer.json
    return dict(answer.json)


def exhausted_error() -> dict[str, str]:
    return {
        "type": "DeliveryExhausted",
        "message": f"each of the {EXECUTIONS} executions max_attempts allows ended without an outcome "
        "(Lambda timeout, out of memory or a crash); redrive its dead letter to run it again",
    }


# --- the run whose last delivery dies ------------------------------------------------------------------


def test_a_run_whose_every_delivery_dies_fails_saying_so_and_its_message_is_dead_lettered(
    api: Api, worker: Worker, urls: dict[str, str]
) -> None:
    dying.add("dl-single")
    [event] = publish("dl/single", {"n": 1})
    deliveries = worker.drain("dl-single")
    assert [len(d.failed) for d in deliveries] == [1] * EXECUTIONS + [0]  # 2 died, the 3rd dead-lettered it
    failed = run(api, event_run_id("dl-single", "dl/single", event.sequence_id))
    assert (failed["status"], failed["attempts"], failed["error"]) == (
        "failed",
        EXECUTIONS,
        exhausted_error(),
    )
    assert calls["dl-single"] == EXECUTIONS
    assert queue_depth(urls["dl-single"]) == 0
    [letter] = dead(api, "dl-single")
    assert letter["run_id"] == failed["run_id"] and letter["kind"] == "event"
    assert letter["event"] == {"id": event.id, "topic": "dl/single", "sequence_id": event.sequence_id}


def test_a_dead_batch_run_fails_too_and_its_letters_name_it(
    api: Api, worker: Worker, urls: dict[str, str]
) -> None:
    dying.add("dl-batch")
    events = publish("dl/batch", {"n": 1}, {"n": 2})
    worker.drain("dl-batch")
    letters = dead(api, "dl-batch")
    assert len(letters) == 2 and len({letter["run_id"] for letter in letters}) == 1
    failed = run(api, letters[0]["run_id"])
    assert (failed["status"], failed["error"]) == ("failed", exhausted_error())
    assert sorted(failed["trigger"]["event_ids"]) == sorted(event.id for event in events)


def test_redrive_resumes_the_same_runs_which_run_again(
    api: Api, worker: Worker, urls: dict[str, str]
) -> None:
    dying.update({"dl-single", "dl-invoke"})
    [event] = publish("dl/single", {"n": 1})
    started = api("POST", "/api/v1/workflows/dl-invoke/run", {"payload": {"order": 7}})
    assert started.status == 202
    worker.drain()
    run_id = event_run_id("dl-single", "dl/single", event.sequence_id)
    assert run(api, run_id)["status"] == run(api, started.json["run_id"])["status"] == "failed"
    assert [letter["run_id"] for letter in dead(api, "dl-invoke")] == [started.json["run_id"]]
    dying.clear()  # the cause is fixed
    assert redrive(api, "dl-single") == 1 and redrive(api, "dl-invoke") == 1
    reopened = run(api, run_id)
    assert (reopened["status"], reopened["error"]) == ("queued", None)  # runnable again
    assert dead(api, "dl-single") == [] and queue_depth(urls["dl-single"] + "-dlq") == 0
    worker.drain()
    for rid, result in ((run_id, event.sequence_id), (started.json["run_id"], {"order": 7})):
        done = run(api, rid)
        assert (done["status"], done["attempts"], done["result"]) == ("completed", EXECUTIONS + 1, result)
    assert redrive(api, "dl-single") == 0


def test_non_retryable_error_on_the_last_delivery_is_acknowledged_not_dead_lettered(
    api: Api, worker: Worker, urls: dict[str, str]
) -> None:
    fatal_on["dl-single"] = EXECUTIONS
    [event] = publish("dl/single", {"n": 1})
    deliveries = worker.drain("dl-single")
    assert [len(d.failed) for d in deliveries] == [1] * (EXECUTIONS - 1) + [0]
    failed = run(api, event_run_id("dl-single", "dl/single", event.sequence_id))
    assert (failed["status"], failed["error"]["type"]) == ("failed", "NonRetryableError")
    assert dead(api, "dl-single") == [] and queue_depth(urls["dl-single"] + "-dlq") == 0


def test_polos_dlq_list_and_redrive(
    api: Api,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import infra.cli.dlq
    from infra.cli.main import main

    dying.add("dl-single")
    [event] = publish("dl/single", {"n": 1})
    worker.drain("dl-single")
    dying.clear()
    client = InProcessClient(worker.pump, api)
    monkeypatch.setattr(infra.cli.dlq, "_client", lambda name: client)
    run_id = event_run_id("dl-single", "dl/single", event.sequence_id)

    def printed() -> str:  # what the command printed, without the handlers' JSON log and metric lines
        return "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith("{"))

    capsys.readouterr()
    assert main(["dlq", "list", "dl-single"]) == 0
    listed = printed().splitlines()
    assert listed[0].split() == ["MESSAGE", "KIND", "RUN", "EVENT", "SENT"]
    assert listed[2].split()[1:4] == ["event", run_id, event.id]
    assert main(["dlq", "redrive", "dl-single"]) == 0
    assert "moved 1 message(s) of dl-single" in printed()
    assert asyncio.run(client.get_run(run_id))["status"] == "completed"  # the GET drains the queue first
    assert main(["dlq", "list", "dl-single"]) == 0
    assert printed().strip() == "no dead letters for dl-single"
    assert main(["dlq", "list", "nope"]) == 1
    assert "workflow 'nope' does not exist (404 not_found)" in capsys.readouterr().err


def test_dead_letter_routes_name_unknown_workflows_and_bad_limits(api: Api) -> None:
    assert api("GET", "/api/v1/workflows/nope/dead-letters").status == 404
    assert api("POST", "/api/v1/workflows/nope/dead-letters/redrive").status == 404
    bad = api("GET", "/api/v1/workflows/dl-single/dead-letters", query={"limit": 0})
    assert bad.status == 400 and "limit" in bad.json["error"]


# --- crash points: invoke send, the last receive, redrive ----------------------------------------------


class CrashAfter:
    """A botocore hook on both clients: ``Died`` right after the n-th request (counted from arming) has
    taken effect."""

    def __init__(self) -> None:
        self.n: int | None = None
        self.seen: list[str] = []

    def arm(self, n: int | None) -> None:
        self.n, self.seen = n, []

    def __call__(self, model: Any, **_: Any) -> None:
        if self.n is None:
            return
        self.seen.append(model.name)
        if len(self.seen) == self.n:
            self.n = None
            raise Died(f"crashed after {model.name}")


@pytest.fixture
def crash(urls: dict[str, str]) -> Iterator[CrashAfter]:
    hook = CrashAfter()
    clients = (settings.dynamodb(), settings.sqs())
    for client in clients:
        client.meta.events.register("after-call", hook)
    yield hook
    for client in clients:
        client.meta.events.unregister("after-call", hook)


def crash_points(action: Callable[[], Any], crash: CrashAfter) -> list[str]:
    """The requests ``action`` makes (it runs once, uncrashed, on its own state)."""
    crash.arm(10_000)
    action()
    points = list(crash.seen)
    crash.arm(None)
    return points


def test_crash_after_each_request_of_an_invoke_then_the_retry_runs_it_once(
    api: Api, worker: Worker, crash: CrashAfter
) -> None:
    def start(key: str) -> Any:
        body = {"payload": {"k": key}}
        return api("POST", "/api/v1/workflows/dl-invoke/run", body, headers={"Idempotency-Key": key})

    points = crash_points(lambda: start("probe"), crash)
    assert points[-2:] == ["PutItem", "SendMessageBatch"], points  # after the API key's GetItem
    for n in range(1, len(points) + 1):
        key = f"crash-{n}"
        crash.arm(n)
        with pytest.raises(Died):
            start(key)
        retried = start(key)
        assert retried.status == 202, retried.json
        worker.drain("dl-invoke")
        done = run(api, retried.json["run_id"])
        assert (done["status"], done["attempts"], done["result"]) == ("completed", 1, {"k": key}), points[
            n - 1
        ]
    assert calls["dl-invoke"] == 1 + len(points)  # the probe and one run per crash point, each once


def test_crash_after_each_request_of_the_spending_receive_leaves_a_redrivable_letter(
    api: Api, worker: Worker, crash: CrashAfter, lease_clock: ShiftedClock
) -> None:
    """The receive after the last allowed execution died fails the run and dead-letters its message; a
    crash after any of its requests leaves the message, whose next receive finishes the job."""
    dying.add("dl-batch")
    mapping = worker.pump.mappings["dl-batch"]
    invoke = worker.pump.invoke
    crashed: list[str] = []
    runs: list[str] = []
    for n in range(1, 20):
        [event] = publish("dl/batch", {"n": n})
        for _ in range(EXECUTIONS):  # every execution allowed dies
            delivery = mapping.poll(wait_seconds=0, flush=True)
            assert delivery is not None and isinstance(delivery.error, Died)
            mapping.release(delivery.failed)
            lease_clock.advance(LEASE_SECONDS + 1)

        def armed(records: dict[str, Any], n: int = n) -> Any:
            crash.arm(n)
            return invoke(records)

        worker.pump.invoke = armed
        try:
            delivery = mapping.poll(wait_seconds=0, flush=True)
        except Died as exc:  # after the worker's answer: the mapping deleting the record crashed
            assert str(exc) == "crashed after DeleteMessageBatch"
            delivery = None
        worker.pump.invoke = invoke
        done = delivery is None or delivery.error is None
        if done:  # the worker ran through: the message is in the dead-letter queue, deleted here
            crash.arm(None)
            assert delivery is None or delivery.failed == []
        else:
            assert delivery is not None
            assert isinstance(delivery.error, Died)
            crashed.append(str(delivery.error))
            mapping.release(delivery.failed)
            worker.drain("dl-batch")  # its next receive dead-letters it
        [letter, *copies] = [x for x in dead(api, "dl-batch") if x["event"]["id"] == event.id]
        assert all(copy["run_id"] == letter["run_id"] for copy in copies)
        assert run(api, letter["run_id"])["status"] == "failed", crashed
        runs.append(letter["run_id"])
        if done:
            break
    assert crashed[-1] == "crashed after SendMessageBatch", crashed
    dying.clear()
    assert redrive(api, "dl-batch") >= len(runs)  # a copy sent twice is moved twice: harmless
    worker.drain("dl-batch")
    assert dead(api, "dl-batch") == []
    assert [run(api, run_id)["status"] for run_id in runs] == ["completed"] * len(runs)
    assert calls["dl-batch"] == len(runs) * (EXECUTIONS + 1)  # each batch run ran once more, and completed


def test_crash_after_each_request_of_a_redrive_loses_nothing_and_runs_once(
    api: Api, worker: Worker, crash: CrashAfter, monkeypatch: pytest.MonkeyPatch, urls: dict[str, str]
) -> None:
    # A crashed redrive's hidden messages show again at once (instead of after a minute).
    monkeypatch.setattr(dead_letters, "MOVE_HIDE_SECONDS", 0)

    def strand(n: int) -> str:
        dying.add("dl-single")
        [event] = publish("dl/single", {"n": n})
        worker.drain("dl-single")
        dying.clear()
        return event_run_id("dl-single", "dl/single", event.sequence_id)

    probe = strand(0)
    points = crash_points(lambda: redrive(api, "dl-single"), crash)
    worker.drain("dl-single")
    assert run(api, probe)["status"] == "completed"
    assert "SendMessageBatch" in points and points[-1] == "DeleteMessageBatch", points
    for n in range(1, len(points) + 1):
        run_id = strand(n)
        crash.arm(n)
        with pytest.raises(Died):
            redrive(api, "dl-single")
        while redrive(api, "dl-single"):  # the operator redrives again (a copy may be moved twice)
            worker.drain("dl-single")
        worker.drain("dl-single")
        done = run(api, run_id)
        assert (done["status"], done["attempts"]) == ("completed", EXECUTIONS + 1), points[n - 1]
        assert queue_depth(urls["dl-single"] + "-dlq") == 0 and queue_depth(urls["dl-single"]) == 0
    assert calls["dl-single"] == (1 + len(points)) * (EXECUTIONS + 1)  # each run ran once after redrive

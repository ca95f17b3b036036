"""The timer sweep always makes progress and sends each wake-up once: a backlogged shard starves no other,
overlapping sweeps send nothing twice, a crash between sending and deleting re-sends at most one page, and
a 20,000-timer backlog wakes every run exactly once.

Timer items are written as :func:`polos.runtime.timers.arm` writes them (:func:`timers.timer_item`) for
runs of the ``backlog`` workflow; the wake-ups sent are the messages of the SendMessageBatch requests SQS
accepted for its queue (no worker runs them).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers.crash_points import SOAK, crash_points
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.chunking import chunked, write_all
from polos.runtime import clock, timers
from polos.testing import Stack, local_stack

from bench.virtual_aws import LambdaTimeout, VirtualTime, charged
from infra.local.functions import load_handler
from infra.metering.meter import Crash, Meter
from infra.model import TIMERS_FUNCTION


@workflow(id="backlog")
async def backlog(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    await ctx.step.wait_for("nap", hours=1)


@workflow(id="sleeper")
async def sleeper(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for("nap", hours=1)
    return "woke"


APP = App("timer-sweep", [backlog, sleeper])


@pytest.fixture
def stack() -> Iterator[Stack]:
    # The test peeks at the sleeper's queue (each peek is a receive): 2 x 5 attempts + 10 receives allowed.
    with local_stack(APP) as opened:
        yield opened


def run_ids(count: int, shard: int | None = None, prefix: str = "run") -> list[str]:
    """``count`` run ids (all in ``shard`` when given)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        run_id = f"{prefix}_{n:026x}"
        n += 1
        if shard is None or timers._shard(run_id) == shard:
            found.append(run_id)
    return found


def arm_backlog(ids: list[str], wake_at: float) -> None:
    """Timers of ``backlog`` runs waiting in step ``nap`` until ``wake_at``, written 25 to a request."""
    table = settings.get_settings().runs_table
    items = [timers.timer_item("backlog", run_id, "nap", wake_at) for run_id in ids]
    for chunk in chunked(items, 25, 16 * 1024 * 1024, lambda _item: 1):
        write_all(settings.dynamodb(), table, [{"PutRequest": {"Item": item}} for item in chunk])


@pytest.fixture
def sends(stack: Stack) -> Iterator[Meter]:
    """The SQS requests of the test (see :func:`wake_ups`)."""
    meter = Meter()
    meter.attach(settings.sqs())
    yield meter
    meter.detach()


def wake_ups(meter: Meter) -> Counter[str]:
    """The wake-ups of ``backlog`` runs sent since the last look, by run id: the messages of the
    SendMessageBatch requests SQS accepted (reading 20,000 messages back from moto takes many minutes)."""
    url = settings.get_settings().queue_url("backlog")
    sent: Counter[str] = Counter()
    for call in meter.select("sqs"):
        if call.operation == "SendMessageBatch" and call.ok and call.params["QueueUrl"] == url:
            for entry in call.params["Entries"]:
                body = json.loads(entry["MessageBody"])
                assert body["kind"] == "resume" and body["step"] == "nap"
                sent[body["run_id"]] += 1
    meter.reset()
    return sent


def waiting_on_queue(workflow_id: str) -> set[str]:
    """The run ids of the messages on a workflow's queue (left there)."""
    url = settings.get_settings().queue_url(workflow_id)
    found: set[str] = set()
    for _ in range(3):  # SQS samples servers: a few receives see every message of a short queue
        answer = settings.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        found |= {json.loads(m["Body"]).get("run_id") for m in answer.get("Messages", [])}
    return found


def timers_left() -> int:
    client = settings.dynamodb()
    return sum(
        client.query(
            TableName=settings.get_settings().runs_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"timer#{shard}"}},
            Select="COUNT",
        )["Count"]
        for shard in range(timers.SHARDS)
    )


def test_a_backlogged_shard_does_not_starve_a_run_whose_timer_sits_in_a_later_shard(
    stack: Stack, sends: Meter
) -> None:
    """Every AWS request takes 1 s of an invocation's 60 s (a virtual clock): shard 0 holds more due timers
    than one invocation can send, and the sleeper's timer sits in a later shard."""
    run_id = stack.invoke("sleeper", {})
    while timers._shard(run_id) == 0:  # one in 16 lands in shard 0 itself: take another run
        run_id = stack.invoke("sleeper", {})
    stack.drain()
    assert stack.run(run_id)["status"] == "waiting"
    stuck = run_ids(800, shard=0)  # 80 SendMessageBatch calls alone: more than 60 s
    arm_backlog(stuck, clock.now() + 3600)
    stack.advance(hours=1, seconds=1)

    handler = load_handler(TIMERS_FUNCTION)
    time = VirtualTime()
    sent: Counter[str] = Counter()
    woken_at: int | None = None
    with charged([settings.dynamodb(), settings.sqs()], time, seconds=1.0):
        for minute in range(6):  # the schedule: an invocation a minute
            invocation = time.invocation(start=60.0 * minute, timeout=TIMERS_FUNCTION.timeout_seconds)
            with invocation as context, contextlib.suppress(LambdaTimeout):
                handler({}, context)
            sent += wake_ups(sends)
            if woken_at is None and run_id in waiting_on_queue("sleeper"):
                woken_at = minute
    assert woken_at == 0, "the sleeper's wake-up was never sent: the backlog of shard 0 starved its shard"
    assert sent == Counter(stuck), "the backlog was not sent exactly once in 6 minutes"
    assert timers_left() == 0
    stack.drain()
    assert stack.run(run_id)["status"] == "completed"


def test_overlapping_sweeps_send_no_wake_up_twice(stack: Stack, sends: Meter) -> None:
    """Sweep A stops right after its first SendMessageBatch (before deleting those timers) while sweep B
    runs from start to end; then A goes on."""
    ids = run_ids(400)
    arm_backlog(ids, clock.now() + 3600)
    stack.advance(hours=1, seconds=1)
    first_sent, b_done = threading.Event(), threading.Event()
    paused: list[bool] = []

    def pause_after_first_send(**_: Any) -> None:
        if not paused:
            paused.append(True)
            first_sent.set()
            assert b_done.wait(60), "sweep B did not finish"

    events = settings.sqs().meta.events
    events.register("after-call.sqs.SendMessageBatch", pause_after_first_send, unique_id="pause-a")
    try:
        errors: list[BaseException] = []

        def sweep_a() -> None:
            try:
                timers.sweep()
            except BaseException as exc:
                errors.append(exc)

        a = threading.Thread(target=sweep_a)
        a.start()
        assert first_sent.wait(60), "sweep A sent nothing"
        timers.sweep()  # sweep B, while A is stopped between a send and its delete
        b_done.set()
        a.join(60)
    finally:
        events.unregister("after-call.sqs.SendMessageBatch", unique_id="pause-a")
    assert not errors, errors
    sent = wake_ups(sends)
    assert set(sent) == set(ids), "a wake-up was never sent"
    twice = {run_id: n for run_id, n in sent.items() if n > 1}
    assert not twice, f"{len(twice)} wake-ups sent more than once, e.g. {next(iter(twice.items()))}"
    assert timers_left() == 0


def test_a_shard_that_fails_leaves_its_timers_for_the_next_sweep_and_the_others_go_on(
    stack: Stack, sends: Meter
) -> None:
    """Every Query of shard 2 is throttled (past botocore's retries) during the first sweep."""
    failing, healthy = run_ids(30, shard=2), run_ids(30, shard=5)
    arm_backlog(failing + healthy, clock.now() + 3600)
    stack.advance(hours=1, seconds=1)

    def throttle_shard_2(params: dict[str, Any], **_: Any) -> None:
        values = params.get("ExpressionAttributeValues", {})
        if values.get(":pk") == {"S": "timer#2"}:
            error: Any = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "Query")

    events = settings.dynamodb().meta.events
    events.register("provide-client-params.dynamodb.Query", throttle_shard_2, unique_id="throttle-2")
    try:
        assert timers.sweep() == len(healthy)
    finally:
        events.unregister("provide-client-params.dynamodb.Query", unique_id="throttle-2")
    assert wake_ups(sends) == Counter(healthy)
    assert timers_left() == len(failing)
    assert timers.sweep() == len(failing)  # its lease was given back: the next sweep takes the shard at once
    assert wake_ups(sends) == Counter(failing)


PAGE_SIZE = 20  # small pages, so that a few timers make several pages
PAGES = 2.5  # a crash may fall in a full page, between pages or in the last, short page


def sweep_with_crash(stack: Stack, ids: list[str], crash_at: int | None) -> int:
    """Sweep ``ids`` (all in one shard), crashing after request ``crash_at``; then sweep again, after the
    dead sweep's lease lapsed, until nothing is due. Returns the requests of the first sweep."""
    arm_backlog(ids, clock.now() + 3600)
    stack.advance(hours=1, seconds=1)
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    meter.crash_after(crash_at)
    with contextlib.suppress(Crash):
        timers.sweep()
    made = len(meter.calls)
    assert not meter.crash_pending, f"no crash happened at request {crash_at}"
    stack.advance(seconds=timers.LEASE_SECONDS + 5)  # the dead sweep's lease lapsed
    while timers.sweep():
        pass
    meter.detach()
    sent = wake_ups(meter)
    assert set(sent) == set(ids), f"crash after request {crash_at}: a wake-up was lost"
    again = sum(sent.values()) - len(ids)
    assert again <= timers.PAGE_SIZE, f"crash after request {crash_at}: {again} wake-ups sent again"
    assert timers_left() == 0
    return made


def test_a_crash_after_any_request_of_a_sweep_loses_no_wake_up_and_resends_at_most_a_page(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timers, "PAGE_SIZE", PAGE_SIZE)
    size = int(PAGE_SIZE * PAGES)
    requests = sweep_with_crash(stack, run_ids(size, shard=3, prefix="probe"), crash_at=None)
    assert requests >= 16 + 3 * 2  # the probes, then each page's Query, sends and deletes
    for n in crash_points(requests):
        sweep_with_crash(stack, run_ids(size, shard=3, prefix=f"crash{n}"), crash_at=n)


def drain_backlog(stack: Stack, sends: Meter, size: int) -> None:
    """``size`` due timers over every shard, swept by the timers function once a minute until none is left:
    each run's wake-up is sent exactly once."""
    ids = run_ids(size)
    arm_backlog(ids, clock.now() + 3600)
    stack.advance(hours=1, seconds=1)
    function = stack._local.timers
    invocations = 0
    while timers_left():
        function.invoke({})
        invocations += 1
        assert invocations < 100, "the sweeps stopped making progress"
    sent = wake_ups(sends)
    assert len(sent) == size and set(sent.values()) == {1}


def test_a_backlog_on_the_local_stack_wakes_every_run_exactly_once(stack: Stack, sends: Meter) -> None:
    drain_backlog(stack, sends, 1_000)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="several minutes on moto: `make soak` (POLOS_SOAK=1) runs it")
@pytest.mark.timeout(900)
def test_a_backlog_of_20000_timers_on_the_local_stack_wakes_every_run_exactly_once(
    stack: Stack, sends: Meter
) -> None:
    drain_backlog(stack, sends, 20_000)


def test_an_idle_sweep_sends_its_shard_probes_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep runs every minute of every month: its 16 probes go out on its threads at once, not one
    after another (the first SWEEPERS of them meet at a barrier, which one-at-a-time probes never pass)."""
    together = threading.Barrier(min(timers.SHARDS, timers.SWEEPERS), timeout=10)
    probed: list[int] = []
    lock = threading.Lock()

    def probe(shard: int) -> bool:
        with lock:
            probed.append(shard)
            first_wave = len(probed) <= together.parties
        if first_wave:
            together.wait()  # BrokenBarrierError after 10 s if the probes came one at a time
        return False

    monkeypatch.setattr(timers, "_has_due", probe)
    assert timers.sweep() == 0
    assert sorted(probed) == list(range(timers.SHARDS))

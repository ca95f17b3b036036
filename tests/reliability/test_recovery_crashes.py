"""Crash tests of recovery: the process dies right after any AWS request of a rerun from a step, of a bulk
rerun and of a bulk cancel; the client retries the request (same ``Idempotency-Key``, same filter) and SQS
delivers what was sent. Nothing is done twice (one rerun per source, each step function called once) and
nothing is skipped (every matching run acted on, every rerun completed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from helpers.crash_points import crash_points
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.errors import NonRetryableError
from polos.testing import Stack, local_stack

from infra.metering.meter import Crash, Meter

pytestmark = [pytest.mark.usefixtures("steady_requests"), pytest.mark.timeout(900)]

calls: Counter[str] = Counter()
broken: set[str] = set()


def work(name: str) -> str:
    calls[name] += 1
    if name in broken:
        raise NonRetryableError(f"bug in {name}")  # the run fails at once, its attempts unspent
    return name


@workflow(id="rc-steps")
async def steps(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    for key in ("one", "two", "three"):
        await ctx.step.run(key, work, f"{payload['id']}.{key}", max_retries=0)
    return str(payload["id"])


@workflow(id="rc-waiter")
async def waiter(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.wait_for_event("paid", "rc/paid", match={"id": payload["id"]})
    return str(work(f"{payload['id']}.after"))


APP = App("recovery-crashes", [steps, waiter])
NOT_THE_TEST: Callable[[Any], bool] = lambda call: call.tag != "test"  # noqa: E731


def crashing(
    stack: Stack,
    crash_at: int | None,
    request: Callable[[], Any],
    done: Callable[[], bool],
    *,
    only_the_request: bool = False,
) -> int:
    """Send ``request`` (again, like a client, when the API died under it), then drain until ``done``,
    crashing after the ``crash_at``-th AWS request (of the request alone with ``only_the_request``: the
    worker's crashes are the crash matrix's); the number of requests counted."""
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    counted = (lambda call: call.tag == "request") if only_the_request else NOT_THE_TEST
    meter.crash_after(crash_at, where=counted)
    answered, finished = False, False
    for _ in range(12):
        try:
            if not answered:
                with meter.tag("request"):
                    request()
                answered = True
            stack.drain()
        except Crash:
            continue
        with meter.tag("test"):
            finished = done()
        if finished:
            break
    made = len([call for call in meter.calls if counted(call)])
    meter.detach()
    assert not meter.crash_pending, f"no crash happened at request {crash_at}"
    assert finished, f"not done after a crash at request {crash_at}"
    return made


def failed_sources(stack: Stack, count: int) -> list[str]:
    """``count`` runs of rc-steps failed in step ``two``; the bug is then fixed and the calls forgotten."""
    sources = [stack.invoke("rc-steps", {"id": n}) for n in range(count)]
    broken.update(f"{n}.two" for n in range(count))
    stack.drain()
    assert {stack.run(run_id)["status"] for run_id in sources} == {"failed"}
    broken.clear()
    calls.clear()
    return sources


def reruns_of(stack: Stack) -> list[dict[str, Any]]:
    with_meter_off = stack.runs("rc-steps")
    return [run for run in with_meter_off if run.get("rerun_of")]


def rerun_from_step(crash_at: int | None) -> int:
    with local_stack(APP, max_attempts=25) as stack:
        (source,) = failed_sources(stack, 1)
        answers: list[Any] = []

        def rerun() -> None:
            body, key = {"from_step": "two"}, {"Idempotency-Key": "rerun-1"}
            answers.append(stack.request("POST", f"/api/v1/runs/{source}/rerun", body, key))

        def completed() -> bool:
            return [run["status"] for run in reruns_of(stack)] == ["completed"]

        made = crashing(stack, crash_at, rerun, completed)
        assert [answer.status for answer in answers] == [202], answers
        (rerun_run,) = reruns_of(stack)
        assert rerun_run["run_id"] == answers[0].body["run_id"] and rerun_run["rerun_of"] == source
        assert calls == Counter({"0.two": 1, "0.three": 1})  # step one replayed; two and three once each
        return made


def bulk_rerun(crash_at: int | None) -> int:
    with local_stack(APP, max_attempts=25) as stack:
        sources = failed_sources(stack, 3)
        answers: list[Any] = []

        def rerun_all() -> None:
            body, key = {"workflow_id": "rc-steps", "status": "failed"}, {"Idempotency-Key": "bulk-1"}
            answers.append(stack.request("POST", "/api/v1/runs/rerun", body, key))

        def completed() -> bool:
            return sorted(run["status"] for run in reruns_of(stack)) == ["completed"] * 3

        made = crashing(stack, crash_at, rerun_all, completed, only_the_request=True)
        assert [(a.status, a.body["matched"]) for a in answers] == [(200, 3)], answers
        assert sorted(run["rerun_of"] for run in reruns_of(stack)) == sorted(sources)  # one each
        assert set(calls.values()) == {1} and len(calls) == 9  # every step of every rerun, once
        return made


def bulk_cancel(crash_at: int | None) -> int:
    calls.clear()
    with local_stack(APP, max_attempts=25) as stack:
        runs = [stack.invoke("rc-waiter", {"id": n}) for n in range(3)]
        stack.drain()
        answers: list[Any] = []

        def cancel_all() -> None:
            body = {"workflow_id": "rc-waiter", "status": "waiting"}
            answers.append(stack.request("POST", "/api/v1/runs/cancel", body))

        def cancelled() -> bool:
            return {stack.run(run_id)["status"] for run_id in runs} == {"cancelled"} and waiters() == 0

        made = crashing(stack, crash_at, cancel_all, cancelled)
        assert [answer.status for answer in answers] == [200], answers
        # the retry matches the runs the crashed call cancelled too (and finishes what followed)
        assert answers[0].body["matched"] == 3
        stack.publish("rc/paid", [{"data": {"id": n}} for n in range(3)])
        stack.drain()
        assert {stack.run(run_id)["status"] for run_id in runs} == {"cancelled"} and not calls
        return made


def waiters() -> int:
    """The rc/paid event waiter items (a test's Scan)."""
    answer = settings.dynamodb().scan(
        TableName=settings.get_settings().events_table,
        FilterExpression="begins_with(pk, :waiters)",
        ExpressionAttributeValues={":waiters": {"S": "wait#rc/paid"}},
        ConsistentRead=True,
    )
    return len(answer.get("Items", []))


def every_point(lifecycle: Callable[[int | None], int], at_least: int) -> None:
    points = lifecycle(None)
    assert points >= at_least
    for n in crash_points(points):
        lifecycle(n)


def test_a_rerun_from_a_step_crashed_after_any_request_and_retried_reruns_once() -> None:
    every_point(rerun_from_step, at_least=6)


def test_a_bulk_rerun_crashed_after_any_request_and_retried_reruns_each_run_once() -> None:
    every_point(bulk_rerun, at_least=10)


def test_a_bulk_cancel_crashed_after_any_request_and_retried_cancels_every_run() -> None:
    every_point(bulk_cancel, at_least=10)

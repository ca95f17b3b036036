"""The journal's conditional writes applied by DynamoDB, their answer lost and botocore's retry refused by
its own condition (the first send changed what it checks): the attempt still counts the write as its own.

Each case runs twice on the same stack: a probe finds which request of the delivery is the write (the
n-th UpdateItem or TransactWriteItems), then the same scenario on fresh runs loses that request's answer
(``helpers.worker.answer_lost``). What the attempt owes after its write is done in the same delivery: the
message is acknowledged (gone from its queue right after the deliveries, none bounced), the parent woken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from helpers.worker import answer_lost, queue_depth
from polos import Queue, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.testing import Stack, local_stack

from infra.local.mapping import Delivery

# Each scenario is probed for the request whose answer it then loses: under ``make chaos``'s faults (retried
# throttles, duplicates) that count would lie elsewhere, as a crash matrix's would.
pytestmark = pytest.mark.usefixtures("steady_requests")

calls: dict[str, int] = {}
# With its payload, past the run item's budget: the result goes to its own item, in a transaction.
PAYLOAD, LARGE = {"blob": "p" * 60_000}, "x" * 320_000


def count(name: str) -> str:
    calls[name] = calls.get(name, 0) + 1
    return name


@workflow(id="la-child")
async def child(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    await ctx.step.run("child_work", count, "child")
    return 7


@workflow(id="la-parent")
async def parent(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    doubled = int(await ctx.step.invoke_and_wait("kid", child, {})) * 2
    await ctx.step.run("after", count, "after")
    return doubled


@workflow(id="la-large")
async def large(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("large_work", count, "large")
    return LARGE


@workflow(id="la-approval")
async def approval(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    await ctx.step.run("submit", count, "submit")
    return await ctx.step.suspend("approve")


WHILE_HOLDING: list[Callable[[], None]] = []  # what the holder of the lane's slot does inside its step


def hold(name: str) -> str:
    count(name)
    while WHILE_HOLDING:
        WHILE_HOLDING.pop()()
    return name


@workflow(id="la-lane", queue=Queue("la-lane", concurrency_limit=1))
async def lane(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await ctx.step.run("hold", hold, payload["name"])


APP = App("lost-answers", [child, parent, large, approval, lane])


@pytest.fixture
def stack() -> Iterator[Stack]:
    calls.clear()
    WHILE_HOLDING.clear()
    with local_stack(APP) as opened:
        yield opened


def deliver_visible(stack: Stack) -> list[Delivery]:
    """Deliver what the queues show now, until they show nothing; a bounced message is not redelivered
    (deployed, it comes back only after its visibility timeout)."""
    deliveries: list[Delivery] = []
    while True:
        polled = [mapping.poll(wait_seconds=0, flush=True) for mapping in stack._local.mappings]
        found = [delivery for delivery in polled if delivery is not None]
        if not found:
            return deliveries
        deliveries += found


def assert_acknowledged(stack: Stack, deliveries: list[Delivery]) -> None:
    bounced = [(delivery.workflow_id, delivery.error) for delivery in deliveries if delivery.failed]
    assert bounced == [], "a delivery was left for redelivery"
    assert {wf: queue_depth(url) for wf, url in stack._local.urls.items()} == dict.fromkeys(
        stack._local.urls, 0
    )


def nth_request(operation: str, wanted: Callable[[dict[str, Any]], bool], scenario: Callable[[], Any]) -> int:
    """Which ``operation`` request of ``scenario`` (1-based) is the first one ``wanted`` picks."""
    seen: list[dict[str, Any]] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    hooks = settings.dynamodb().meta.events
    hooks.register(f"before-parameter-build.dynamodb.{operation}", note)
    try:
        scenario()
    finally:
        hooks.unregister(f"before-parameter-build.dynamodb.{operation}", note)
    return next(n for n, params in enumerate(seen, 1) if wanted(params))


def finishing(status: str) -> Callable[[dict[str, Any]], bool]:
    """An attempt's ``Journal.finish`` ending the run ``status`` (an UpdateItem, or in a transaction)."""

    def wanted(params: dict[str, Any]) -> bool:
        update = params["TransactItems"][0].get("Update", {}) if "TransactItems" in params else params
        values = update.get("ExpressionAttributeValues", {})
        return update.get("ConditionExpression") == "lease_owner = :owner" and values.get(":status") == {
            "S": status
        }

    return wanted


Outcome = TypeVar("Outcome")


def with_answer_lost(
    stack: Stack,
    operation: str,
    wanted: Callable[[dict[str, Any]], bool],
    scenario: Callable[[], tuple[Outcome, list[Delivery]]],
    probe: Callable[[], Any] | None = None,
) -> Outcome:
    """Run ``scenario`` with the answer of its first ``operation`` request ``wanted`` picks lost (found by a
    probe run of ``probe``, default the scenario itself); assert every delivery was acknowledged at once."""
    nth = nth_request(operation, wanted, probe or scenario)
    calls.clear()
    with answer_lost(operation, nth) as seen:
        outcome, deliveries = scenario()
    assert seen[0] > nth, "the request whose answer is lost was not made"
    assert_acknowledged(stack, deliveries)
    return outcome


def test_a_child_whose_finish_answer_was_lost_is_acknowledged_and_wakes_its_parent_at_once(
    stack: Stack,
) -> None:
    def scenario() -> tuple[str, list[Delivery]]:
        run_id = stack.invoke("la-parent", {})
        return run_id, deliver_visible(stack)

    # The child's finish: the first to complete.
    run_id = with_answer_lost(stack, "UpdateItem", finishing("completed"), scenario)
    run = stack.run(run_id)
    assert (run["status"], run["result"]) == ("completed", 14), run
    assert calls == {"child": 1, "after": 1}


def test_a_run_parked_waiting_whose_answer_was_lost_is_acknowledged_waiting(stack: Stack) -> None:
    def scenario() -> tuple[str, list[Delivery]]:
        run_id = stack.invoke("la-approval", {})
        return run_id, deliver_visible(stack)

    run_id = with_answer_lost(stack, "UpdateItem", finishing("waiting"), scenario)
    assert stack.run(run_id)["status"] == "waiting"
    body = {"step_key": "approve", "data": {"ok": 1}}
    assert stack.request("POST", f"/api/v1/runs/{run_id}/resume", body).status == 200
    assert_acknowledged(stack, deliver_visible(stack))
    assert stack.run(run_id)["result"] == {"ok": 1} and calls == {"submit": 1}


def test_a_result_kept_apart_whose_transaction_answer_was_lost_is_acknowledged(stack: Stack) -> None:
    def scenario() -> tuple[str, list[Delivery]]:
        run_id = stack.invoke("la-large", PAYLOAD)
        return run_id, deliver_visible(stack)

    run_id = with_answer_lost(stack, "TransactWriteItems", finishing("completed"), scenario)
    run = stack.run(run_id)
    assert (run["status"], run["result"]) == ("completed", LARGE)
    assert calls == {"large": 1}


def test_a_lease_taken_whose_answer_was_lost_runs_the_attempt_in_the_same_delivery(stack: Stack) -> None:
    def scenario() -> tuple[str, list[Delivery]]:
        run_id = stack.invoke("la-child", {})
        return run_id, deliver_visible(stack)

    def takes_lease(params: dict[str, Any]) -> bool:
        return "lease_owner = :owner" in params.get("UpdateExpression", "")  # finish REMOVEs it

    run_id = with_answer_lost(stack, "UpdateItem", takes_lease, scenario)
    run = stack.run(run_id)
    assert (run["status"], run["result"], run["attempts"]) == ("completed", 7, 1), run
    assert calls == {"child": 1}


@pytest.mark.parametrize("lost", ["queued", "completed"], ids=["waiter-parked", "holder-ended"])
def test_a_slot_waiter_parked_or_a_holder_ended_whose_answer_was_lost_is_acknowledged_and_handed_on(
    stack: Stack, lost: str
) -> None:
    """The holder of the lane's one slot starts a second run while it runs: that run parks ``queued`` in the
    backlog; the holder's end hands the slot on to it. Either write's answer is lost."""
    (lane_mapping,) = [m for m in stack._local.mappings if m.spec.workflow_id == "la-lane"]

    def invoke(name: str, key: str) -> str:
        body = {"payload": {"name": name}, "concurrency_key": key}
        answer = stack.request("POST", "/api/v1/workflows/la-lane/run", body)
        assert answer.status == 202, answer.body
        return str(answer.body["run_id"])

    def scenario(key: str) -> tuple[list[str], list[Delivery]]:
        nested: list[Delivery] = []
        run_ids = [invoke("holder", key)]

        def start_waiter() -> None:
            run_ids.append(invoke("waiter", key))
            delivery = lane_mapping.poll(wait_seconds=0, flush=True)
            assert delivery is not None
            nested.append(delivery)

        WHILE_HOLDING.append(start_waiter)
        return run_ids, deliver_visible(stack) + nested

    run_ids = with_answer_lost(
        stack, "UpdateItem", finishing(lost), lambda: scenario("lost"), probe=lambda: scenario("probe")
    )
    runs = [stack.run(run_id) for run_id in run_ids]
    assert [(run["status"], run["result"], run["attempts"]) for run in runs] == [
        ("completed", "holder", 1),
        ("completed", "waiter", 1),
    ]
    assert calls == {"holder": 1, "waiter": 1}

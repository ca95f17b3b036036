"""What a run costs in DynamoDB requests, counted with botocore event hooks."""

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.runs import store_invoked
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.definition import Workflow
from polos.runtime.executor import Attempt, execute

READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
STEP_CALLS: Counter[str] = Counter()


def step_fn(key: str) -> Any:
    def call() -> str:
        STEP_CALLS[key] += 1
        return key

    return call


@workflow(id="one-step")
async def one_step(ctx: WorkflowContext) -> list[str]:
    return [await ctx.step.run("s0", step_fn("s0"))]


@workflow(id="five-steps")
async def five_steps(ctx: WorkflowContext) -> list[str]:
    return [await ctx.step.run(f"s{i}", step_fn(f"s{i}")) for i in range(5)]


@workflow(id="waits-an-hour")
async def waits_an_hour(ctx: WorkflowContext) -> str:
    await ctx.step.wait_for("nap", hours=1)
    return "awake"


class Requests:
    """Counts the DynamoDB operations the process-wide client makes."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        settings.dynamodb().meta.events.register("before-call.dynamodb.*", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.ops[model.name] += 1

    def reset(self) -> None:
        self.ops.clear()

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.ops.items() if op in READS)

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.ops.items() if op in WRITES)


@pytest.fixture
def requests(provision_app: Callable[..., Any]) -> Iterator[Requests]:
    provision_app(App("cost-tests", [one_step, five_steps, waits_an_hour]))
    STEP_CALLS.clear()
    yield Requests()


@pytest.mark.parametrize(("wf", "k"), [(one_step, 1), (five_steps, 5)])
def test_first_attempt_costs_no_read_and_at_most_k_plus_2_writes(
    requests: Requests, wf: Workflow, k: int
) -> None:
    store_invoked(wf.id, "run-1")
    requests.reset()
    result = asyncio.run(execute(Attempt(wf, "run-1", "invoke")))
    assert result.outcome == "completed" and len(result.result) == k
    assert requests.reads == 0, requests.ops  # lease first: its answer says no earlier attempt ran
    assert requests.writes <= k + 2, requests.ops
    assert sum(STEP_CALLS.values()) == k


@pytest.mark.parametrize(("wf", "k"), [(one_step, 1), (five_steps, 5)])
def test_a_duplicate_of_a_completed_run_costs_one_refused_write_and_nothing_else(
    requests: Requests, wf: Workflow, k: int
) -> None:
    store_invoked(wf.id, "run-1")
    asyncio.run(execute(Attempt(wf, "run-1", "invoke")))
    requests.reset()
    STEP_CALLS.clear()
    again = asyncio.run(execute(Attempt(wf, "run-1", "invoke")))
    assert again.outcome == "finished"
    assert (requests.reads, requests.writes) == (0, 1), requests.ops  # the lease's write, refused
    assert sum(STEP_CALLS.values()) == 0


def test_a_retry_reads_once_and_writes_only_new_steps(requests: Requests) -> None:
    """Steps journaled by an earlier attempt cost nothing more than the one Query that loads them."""
    store_invoked(five_steps.id, "run-1")
    asyncio.run(execute(Attempt(five_steps, "run-1", "invoke")))
    # Pretend the run's finish was lost: put it back to queued and deliver it again.
    settings.dynamodb().update_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": "run#run-1"}, "sk": {"S": "run"}},
        UpdateExpression="SET #s = :q",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": {"S": "queued"}},
    )
    requests.reset()
    STEP_CALLS.clear()
    again = asyncio.run(execute(Attempt(five_steps, "run-1", "invoke")))
    assert again.outcome == "completed"
    assert (requests.reads, requests.writes) == (1, 2), requests.ops  # acquire + finish
    assert sum(STEP_CALLS.values()) == 0


def test_a_duplicate_delivery_of_a_waiting_run_is_acknowledged_by_the_refused_lease(
    requests: Requests,
) -> None:
    """Lease first does not take a waiting run: only its wake-up does (it reads the journal first)."""
    store_invoked(waits_an_hour.id, "run-1")
    assert asyncio.run(execute(Attempt(waits_an_hour, "run-1", "invoke"))).outcome == "waiting"
    requests.reset()
    again = asyncio.run(execute(Attempt(waits_an_hour, "run-1", "invoke")))
    assert again.outcome == "waiting" and again.run is not None and again.run.status == "waiting"
    assert (requests.reads, requests.writes) == (0, 1), requests.ops
    item = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": "run#run-1"}, "sk": {"S": "run"}},
        ConsistentRead=True,
    )["Item"]
    assert item["status"]["S"] == "waiting" and "lease_owner" not in item and item["attempts"]["N"] == "1"

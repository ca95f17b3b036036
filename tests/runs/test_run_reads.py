"""``GET /api/v1/runs/{id}`` and ``?step=KEY`` read what their answer needs: the run, its step summaries and
the results the answer holds (at most the 5 MB response budget); ``?step=KEY`` the run item and that step.
Never the run's whole partition (a run of many large steps is megabytes over many Query pages)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.responses import RESPONSE_BUDGET_BYTES
from polos.testing import Stack, local_stack

from infra.metering.meter import Meter

STEPS = 12
RESULT_CHARS = 300_000  # 12 x 300 KB: a 3.6 MB partition, four 1 MB Query pages


def big(index: int) -> str:
    return str(index) * RESULT_CHARS


@workflow(id="reads-many")
async def many(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    for index in range(STEPS):
        await ctx.step.run(f"s{index}", big, index % 10)
    return STEPS


MANY = 40  # 40 x 300 KB: a 12 MB partition, twelve 1 MB Query pages


@workflow(id="reads-more")
async def more(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    for index in range(MANY):
        await ctx.step.run(f"s{index}", big, index % 10)
    return MANY


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(App("reads", [many, more])) as opened:
        yield opened


def _reads(stack: Stack, path: str) -> tuple[dict[str, Any], float, list[str]]:
    """The answer, the read units it took of the runs table, and the runs-table operations it made."""
    meter = Meter(shadow=boto3.client("dynamodb", region_name="us-east-1"))
    meter.attach(settings.dynamodb())
    try:
        answer = stack.request("GET", path)
    finally:
        meter.detach()
    assert answer.status == 200, answer.body
    runs_table = settings.get_settings().runs_table
    calls = [
        call
        for call in meter.select("dynamodb")
        if call.params.get("TableName") == runs_table or runs_table in call.params.get("RequestItems", {})
    ]
    return answer.body, sum(call.read_units for call in calls), [call.operation for call in calls]


def test_one_step_is_read_without_the_rest_of_the_run(stack: Stack) -> None:
    run_id = stack.invoke("reads-many", {})
    stack.drain()
    assert stack.run(run_id)["status"] == "completed"
    body, units, operations = _reads(stack, f"/api/v1/runs/{run_id}?step=s5")
    assert [step["key"] for step in body["steps"]] == ["s5"] and body["steps"][0]["result"] == big(5)
    assert "Query" not in operations, (operations, units)  # no page of the partition
    # strongly consistent: a unit per 4 KB, of the step and of the run item (which keeps the run's last
    # step, journaled with its outcome: another 300 KB here)
    needed = 2 * RESULT_CHARS / 4096
    assert units <= needed + 10, f"{units} read units for one {RESULT_CHARS // 1000} KB step"


def test_the_step_kept_in_the_run_item_and_a_missing_one(stack: Stack) -> None:
    run_id = stack.invoke("reads-many", {})
    stack.drain()
    last = f"s{STEPS - 1}"  # journaled in the run item, with the run's outcome
    body, _, operations = _reads(stack, f"/api/v1/runs/{run_id}?step={last}")
    assert [step["key"] for step in body["steps"]] == [last] and "Query" not in operations
    assert body["steps"][0]["result"] == big((STEPS - 1) % 10) and body["result"] == STEPS
    answer = stack.request("GET", f"/api/v1/runs/{run_id}?step=nope")
    assert answer.status == 404 and "nope" in answer.body["error"], answer.body
    assert stack.request("GET", "/api/v1/runs/run_nosuchrun?step=s0").status == 404


def test_the_run_page_reads_its_summaries_and_only_the_results_it_holds(stack: Stack) -> None:
    run_id = stack.invoke("reads-more", {})
    stack.drain()
    body, units, operations = _reads(stack, f"/api/v1/runs/{run_id}")
    assert [step["key"] for step in body["steps"]] == [f"s{index}" for index in range(MANY)]
    held = [step for step in body["steps"] if "result" in step and not step.get("result_omitted")]
    assert held and all(step["result"] == big(int(step["key"][1:]) % 10) for step in held)
    assert len(held) < MANY  # 12 MB of results: the 5 MB answer holds some, names the rest omitted
    # the results held (at most the budget) and a unit for each other item, nothing more
    assert units <= RESPONSE_BUDGET_BYTES / 4096 + MANY + 10, (units, operations)

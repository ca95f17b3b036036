"""DynamoDB's 400 KB item limit: the largest payload with the largest result finishes its run (on moto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers.stack import provision
from helpers.worker import Pump, queue_depth
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime import journal, runs
from polos.serde import MAX_RESULT_BYTES

PAYLOAD_BYTES = 256 * 1024  # the largest invocation payload the API accepts


def big_text(size: int, char: str) -> str:
    """A string whose compact JSON form is exactly ``size`` bytes."""
    return char * (size - 2)


@workflow(id="wsz-big")
async def big(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    step = await ctx.step.run("echo", big_text, MAX_RESULT_BYTES, "s")  # the largest step result
    assert len(step) == MAX_RESULT_BYTES - 2
    return big_text(MAX_RESULT_BYTES, "r")  # the largest run result


APP = App("worker-item-size", [big])


@pytest.fixture
def pump(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pump:
    return Pump(APP, provision(APP, tmp_path, monkeypatch))


def test_moto_enforces_the_400_kb_item_limit(pump: Pump) -> None:
    with pytest.raises(ClientError) as raised:
        settings.dynamodb().put_item(
            TableName=settings.get_settings().runs_table,
            Item={"pk": {"S": "run#x"}, "sk": {"S": "run"}, "blob": {"S": "b" * 400 * 1024}},
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def largest_payload() -> dict[str, str]:
    payload = {"blob": ""}
    payload["blob"] = "p" * (PAYLOAD_BYTES - len(json.dumps(payload, separators=(",", ":"))))
    return payload


def test_the_largest_payload_with_the_largest_result_completes_its_run(pump: Pump) -> None:
    payload = largest_payload()
    payload_json = json.dumps(payload, separators=(",", ":"))
    assert len(payload_json.encode()) == PAYLOAD_BYTES
    run, created = runs.create_invoked("wsz-big", payload_json, None)
    assert created
    runs.enqueue(run)
    delivery = pump.once("wsz-big")
    assert delivery is not None and not delivery.failed
    assert queue_depth(pump.mappings["wsz-big"].spec.queue_url) == 0
    view = runs.get_run(run.run_id)
    assert view is not None and view["status"] == "completed" and view["attempts"] == 1
    assert view["result"] == big_text(MAX_RESULT_BYTES, "r")
    assert view["steps"][0]["result"] == big_text(MAX_RESULT_BYTES, "s")
    execution = runs.get_execution(run.run_id)
    assert execution is not None and execution["payload"] == payload
    assert execution["result"] == view["result"]
    [listed] = runs.list_runs(["wsz-big"], None, 10, None).runs
    assert listed["result"] == view["result"]


def test_an_outcome_dynamodb_refuses_fails_the_run_instead_of_leaving_it_running(
    pump: Pump, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "RUN_ITEM_BUDGET", 10**9)  # a budget that misses: the item overflows
    run, _ = runs.create_invoked("wsz-big", json.dumps(largest_payload()), None)
    runs.enqueue(run)
    delivery = pump.once("wsz-big")
    assert delivery is not None and not delivery.failed, "the run is done with: not delivered again"
    view = runs.get_run(run.run_id)
    assert view is not None and (view["status"], view["result"]) == ("failed", None)
    assert view["error"]["type"] == "RunOutcomeTooLargeError"
    assert "result could not be stored" in view["error"]["message"]

"""Runs as the API stores them before their message is sent (the worker never creates an invoked run)."""

from __future__ import annotations

import json
from typing import Any

from polos.runtime.records import RunRecord
from polos.runtime.runs import create_invoked


def store_invoked(workflow_id: str, run_id: str, payload: Any = None) -> RunRecord:
    """A ``queued`` invoked run, as ``POST /api/v1/workflows/{id}/run`` stores it (kept if it exists)."""
    run, _ = create_invoked(workflow_id, json.dumps(payload), None, run_id=run_id)
    return run


def index_entries(workflow_id: str) -> list[dict[str, Any]]:
    """Every ``by_workflow`` index entry of ``workflow_id``'s runs, in all its partitions."""
    from polos.aws import settings
    from polos.runtime.journal import BY_WORKFLOW_INDEX, index_partitions

    return [
        item
        for partition in index_partitions(workflow_id)
        for item in settings.dynamodb().query(
            TableName=settings.get_settings().runs_table,
            IndexName=BY_WORKFLOW_INDEX,
            KeyConditionExpression="wf = :wf",
            ExpressionAttributeValues={":wf": {"S": partition}},
        )["Items"]
    ]


def step_items(run_id: str) -> list[str]:
    """The sort keys of a run's own step items (``step#...``): the steps journaled apart from the run item."""
    from polos.aws import settings
    from polos.runtime.journal import run_pk

    answer = settings.dynamodb().query(
        TableName=settings.get_settings().runs_table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :step)",
        ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}, ":step": {"S": "step#"}},
        ConsistentRead=True,
    )
    return [item["sk"]["S"] for item in answer["Items"]]


def kept_steps(run_id: str) -> list[str]:
    """The names of the steps kept in a run's run item (attributes ``step#...``), sorted."""
    from polos.aws import settings
    from polos.runtime.journal import RUN_SK, run_pk

    answer = settings.dynamodb().get_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
        ConsistentRead=True,
    )
    return sorted(name for name in answer.get("Item", {}) if name.startswith("step#"))

"""An app for ``polos dev --aws-faults iam``: one workflow within its role, one reaching past it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from polos import NonRetryableError, WorkflowContext, workflow
from polos.aws import settings


def read_an_api_key() -> str:
    """Reads the API keys table, which the worker's role does not grant."""
    table = settings.get_settings().keys_table
    try:
        settings.dynamodb().get_item(TableName=table, Key={"pk": {"S": "nobody"}})
    except ClientError as exc:
        raise NonRetryableError(str(exc)) from exc
    return "read"


@workflow(id="within-role")
async def within_role(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await ctx.step.run("hello", lambda: "hello")


@workflow(id="past-role")
async def past_role(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await ctx.step.run("read_key", read_an_api_key, max_retries=0)

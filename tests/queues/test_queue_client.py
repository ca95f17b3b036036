"""``Workflow.invoke`` / ``PolosClient.start_workflow`` send the run's queue arguments in the HTTP body
(only those given: a plain invoke's body is unchanged)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from polos import WorkflowContext, workflow
from polos.client import PolosClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_client_retries import KEY, server


@workflow(id="q-client")
async def q_client(ctx: WorkflowContext, payload: dict[str, Any]) -> None: ...


def test_invoke_sends_queue_name_limit_and_key_in_the_body() -> None:
    with server([]) as (url, seen):
        client = PolosClient(url, KEY)
        asyncio.run(
            q_client.invoke(
                client, {"a": 1}, queue_name="lane", queue_concurrency_limit=2, concurrency_key="cus-1"
            )
        )
        asyncio.run(q_client.invoke(client, {"a": 2}))
    assert seen[0]["body"] == {
        "payload": {"a": 1},
        "queue_name": "lane",
        "queue_concurrency_limit": 2,
        "concurrency_key": "cus-1",
    }
    assert seen[1]["body"] == {"payload": {"a": 2}}

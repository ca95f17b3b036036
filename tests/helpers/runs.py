"""Runs as the API stores them before their message is sent (the worker never creates an invoked run)."""

from __future__ import annotations

import json
from typing import Any

from polos.runtime.journal import Journal, now_iso
from polos.runtime.records import RunRecord


def store_invoked(workflow_id: str, run_id: str, payload: Any = None) -> RunRecord:
    """A ``queued`` invoked run, as ``POST /api/v1/workflows/{id}/run`` stores it (kept if it exists)."""
    stamp = now_iso()
    run = RunRecord(
        run_id=run_id,
        workflow_id=workflow_id,
        status="queued",
        attempts=0,
        trigger_type="invoke",
        created_at=stamp,
        updated_at=stamp,
        payload_json=json.dumps(payload),
    )
    return Journal().create_queued(run)

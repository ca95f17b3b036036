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

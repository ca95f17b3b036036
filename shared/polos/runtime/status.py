"""What state a run is in: a module of its own, so the runs API validates a status filter without loading
the run records (their dataclasses cost the API's cold start ~2.5 ms, issue 12)."""

from __future__ import annotations

from typing import Literal

RunStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled", "skipped"]
# The statuses a run never leaves (``skipped``: a rate limit gave the event no execution).
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "skipped"})

"""Event flow control options (``@workflow(debounce=, throttle=, rate_limit=)``): each one checked at
decoration time, with an error naming the option, the value and the rule (DESIGN §1c).

The runtime side is :mod:`polos.runtime.event_flow`; this module only validates and normalises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polos.errors import WorkflowDefinitionError

MIN_PERIOD_SECONDS = 1
MAX_PERIOD_SECONDS = 7 * 24 * 3600
MAX_THROTTLE_LIMIT = 1_000
# A rate limit's window holds one entry per run in the period: bounded so its item stays well under 400 KB.
MAX_RATE_LIMIT = 10_000
# A dotted path into the event: identifier-like segments joined by ``.`` (``data.customer_id``).
KEY_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
OPTIONS = ("debounce", "throttle", "rate_limit")


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """One option: ``kind`` (``debounce``, ``throttle``, ``rate_limit``), the key path (``None``: one bucket
    for the workflow), ``period`` (s), and ``limit`` (throttle, rate limit) or ``timeout`` (debounce, s)."""

    kind: str
    key: str | None
    period: float
    limit: int = 0
    timeout: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The option as the user wrote it (normalised): what ``Workflow.<option>`` shows."""
        shown: dict[str, Any] = {"key": self.key, "period": self.period}
        if self.kind == "debounce":
            shown["timeout"] = self.timeout
        else:
            shown["limit"] = self.limit
        return shown


def _problem(wf_id: str, option: str, value: object, rule: str) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(f"workflow {wf_id!r}: {option}={value!r} is invalid: {rule}")


def _seconds(wf_id: str, option: str, name: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _problem(wf_id, option, raw, f"{name} must be a number of seconds")
    if not MIN_PERIOD_SECONDS <= raw <= MAX_PERIOD_SECONDS:
        raise _problem(
            wf_id, f"{option}.{name}", raw, f"it must be between {MIN_PERIOD_SECONDS} s and 7 days (604800 s)"
        )
    return float(raw)


def parse(wf_id: str, option: str, raw: object, *, event_triggered: bool, batch: bool) -> FlowLimit | None:
    """The validated option (``None`` when not given); ``WorkflowDefinitionError`` naming what is wrong."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _problem(wf_id, option, raw, "it must be a dict like {'key': 'data.id', 'period': 60}")
    if not event_triggered:
        raise _problem(wf_id, option, raw, "it applies to event-triggered workflows only")
    if batch:
        raise _problem(
            wf_id,
            option,
            raw,
            "it applies to single-event workflows, not to a batch workflow",
        )
    allowed = {"key", "period", "timeout"} if option == "debounce" else {"key", "period", "limit"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _problem(wf_id, option, raw, f"unknown field(s) {unknown}; it takes {sorted(allowed)}")
    key = raw.get("key")
    if key is not None and (not isinstance(key, str) or not KEY_PATH.fullmatch(key)):
        raise _problem(
            wf_id, f"{option}.key", key, "it must be a dotted path into the event ('data.customer_id')"
        )
    if "period" not in raw:
        raise _problem(wf_id, option, raw, "period (seconds) is required")
    period = _seconds(wf_id, option, "period", raw["period"])
    if option == "debounce":
        timeout = (
            _seconds(wf_id, option, "timeout", raw["timeout"]) if "timeout" in raw else MAX_PERIOD_SECONDS
        )
        if timeout < period:
            raise _problem(
                wf_id, f"{option}.timeout", raw.get("timeout"), f"it must be >= period ({period:g} s)"
            )
        return FlowLimit("debounce", key, period, timeout=timeout)
    limit = raw.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise _problem(wf_id, f"{option}.limit", limit, "it must be a whole number >= 1")
    if limit < 1:
        raise _problem(wf_id, f"{option}.limit", limit, "it must be >= 1")
    most = MAX_THROTTLE_LIMIT if option == "throttle" else MAX_RATE_LIMIT
    if limit > most:
        raise _problem(wf_id, f"{option}.limit", limit, f"it must be <= {most}")
    return FlowLimit(option, key, period, limit=limit)

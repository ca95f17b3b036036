"""A run's attempt history (DESIGN §2 ``attempt_history``): when each execution ran and how it ended.

Stored without an extra write on the common path and without letting any item grow with the run's age:

- each execution's summary (``attempt``, ``started_at``, ``finished_at``, ``outcome``, a short ``error``) is
  one attribute of the run item, ``attempt#<n mod KEPT>``, set by the UpdateItem that ends the attempt
  (``Journal.finish``): the last :data:`KEPT` executions are kept, at most ~6 KB of the run item;
- a failed execution's traceback (at most :data:`MAX_TRACEBACK_BYTES`) is an item of its own in the run's
  partition, ``traceback#<n>`` (one PutItem, only when an execution fails), TTL'd like the run. It sorts
  after ``run`` and before ``value#``: the runs API reads it with the run (one Query), while the executor's
  and the listing's reads of the run item alone never do.

A run its first execution ends (``completed``, ``failed``, ``cancelled``: most runs) keeps no summary: the
run's own status, ``updated_at`` (the same stamp) and error tell it, all but when the execution started,
kept as its duration in microseconds (:data:`DURATION_ATTRIBUTE`, ~10 bytes instead of ~140). A redrive
(``Journal.reopen``) writes that summary whole before the run's status and error change. Items written before
keep their ``attempt#1``; both forms read the same (:func:`history`).

An execution that died before ending (its Lambda timed out, its lease was lost) leaves no summary: the
history shows its number as ``lost``.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from polos.runtime.records import FINISHED, ErrorInfo, RunRecord
from polos.timestamps import parse_utc_iso, utc_iso

KEPT = 10  # executions whose summary the run item keeps
SUMMARY_PREFIX = "attempt#"  # run item attributes
TRACEBACK_PREFIX = "traceback#"  # sort keys of the traceback items
MAX_TRACEBACK_BYTES = 8 * 1024
MAX_SUMMARY_MESSAGE = 300  # characters of the error message in a summary (the run's error has it whole)
# Run item attribute of a run its first execution ended: that execution's duration in microseconds.
DURATION_ATTRIBUTE = "took_us"


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """How one execution of a run ended."""

    attempt: int
    started_at: str
    finished_at: str
    outcome: str  # completed, failed, retried, waiting, cancelled, deferred (AWS overloaded; not counted)
    error: ErrorInfo | None = None

    @property
    def attribute(self) -> str:
        """The run item attribute that holds it (the slot of the :data:`KEPT` last executions)."""
        return f"{SUMMARY_PREFIX}{self.attempt % KEPT}"

    @property
    def ends_first(self) -> bool:
        """Whether it is the first execution's and ended the run: the run item tells all of it but
        :attr:`duration_us` (see the module's docstring)."""
        return self.attempt == 1 and self.outcome in FINISHED

    @property
    def duration_us(self) -> int:
        return (parse_utc_iso(self.finished_at) - parse_utc_iso(self.started_at)) // timedelta(microseconds=1)

    def view(self) -> dict[str, Any]:
        """The summary as ``attempt_history`` shows it (its error's message cut to
        :data:`MAX_SUMMARY_MESSAGE` characters)."""
        body: dict[str, Any] = {
            "attempt": self.attempt,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
        }
        if self.error is not None:
            message = self.error.message
            if len(message) > MAX_SUMMARY_MESSAGE:
                message = message[:MAX_SUMMARY_MESSAGE] + "…"
            body["error"] = {"type": self.error.type, "message": message}
        return body

    def to_json(self) -> str:
        return json.dumps(self.view(), ensure_ascii=False, separators=(",", ":"))


def first_execution(run: RunRecord, run_item: dict[str, Any]) -> AttemptSummary | None:
    """The summary of the first execution of a run it ended, from its run item (``None`` unless the item
    has :data:`DURATION_ATTRIBUTE`): the run's status, ``updated_at`` and error, started that long before."""
    took = run_item.get(DURATION_ATTRIBUTE, {}).get("N")
    if took is None:
        return None
    started = utc_iso(parse_utc_iso(run.updated_at) - timedelta(microseconds=int(took)))
    return AttemptSummary(1, started, run.updated_at, run.status, run.error)


def outcome_of(status: str, error: ErrorInfo | None, uncounted: bool) -> str:
    """The outcome of an execution that ended the run ``status`` (``queued``: it will run again)."""
    if status == "queued":
        return "deferred" if uncounted else "retried"
    return status


def summary(
    run: RunRecord, status: str, error: ErrorInfo | None, uncounted: bool, now: str
) -> AttemptSummary:
    """The summary of the execution of ``run`` ending now (``run.updated_at`` is when its lease was taken)."""
    return AttemptSummary(run.attempts, run.updated_at, now, outcome_of(status, error, uncounted), error)


def _tail(text: str, limit: int) -> str:
    """``text``'s last ``limit`` bytes of UTF-8 at most, saying how much was cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    note = "… ({} bytes cut)\n"
    keep = data[len(data) - (limit - len(note.format(len(data)).encode())) :].decode("utf-8", "ignore")
    return note.format(len(data) - len(keep.encode())) + keep


def bounded_traceback(exc: BaseException) -> str:
    """``exc``'s traceback in at most :data:`MAX_TRACEBACK_BYTES` of UTF-8: its last line (the error, cut
    to a quarter) and as many of the innermost frames as fit before it."""
    text = "".join(traceback.format_exception(exc))
    error = "".join(traceback.format_exception_only(exc))
    frames = text.removesuffix(error)
    error = error.encode("utf-8", "replace")[: MAX_TRACEBACK_BYTES // 4].decode("utf-8", "ignore")
    if not error.endswith("\n"):
        error += "…\n"
    return _tail(frames, MAX_TRACEBACK_BYTES - len(error.encode())) + error


def traceback_sort_key(attempt: int) -> str:
    return f"{TRACEBACK_PREFIX}{attempt:06d}"


def history(run: RunRecord, run_item: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``attempt_history`` of the runs API: the kept summaries, oldest first, each failed one with its
    traceback (from ``items``, the run's partition as read); numbers in between without one are ``lost``."""
    found: dict[int, dict[str, Any]] = {}
    for name, value in run_item.items():
        if name.startswith(SUMMARY_PREFIX) and "S" in value:
            entry = json.loads(value["S"])
            found[int(entry["attempt"])] = entry
    if (ended_by_first := first_execution(run, run_item)) is not None:
        found[1] = ended_by_first.view()
    traces = {
        item["sk"]["S"]: item["traceback"]["S"]
        for item in items
        if item.get("sk", {}).get("S", "").startswith(TRACEBACK_PREFIX) and "traceback" in item
    }
    if not found and run.status != "running":
        return []  # never executed, or stored before attempt summaries were
    first = max(run.attempts - KEPT + 1, 1)
    shown: list[dict[str, Any]] = []
    for number in range(first, max([*found, run.attempts]) + 1):
        entry = found.get(number)
        if entry is None:
            if number == run.attempts and run.status == "running":
                shown.append(
                    {
                        "attempt": number,
                        "started_at": run.updated_at,
                        "finished_at": None,
                        "outcome": "running",
                    }
                )
            else:
                shown.append({"attempt": number, "started_at": None, "finished_at": None, "outcome": "lost"})
            continue
        if "error" in entry:
            entry["error"]["traceback"] = traces.get(traceback_sort_key(number))
        shown.append(entry)
    return shown

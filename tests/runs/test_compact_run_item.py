"""Issue 26: a run whose first execution ends it keeps no ``attempt#1`` summary in its run item (only the
execution's duration: the rest is the run's own status, times and error); every reader answers as before,
for such items and for items written before (which keep their summary)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, publish
from polos import NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.item_size import item_size
from polos.runtime import attempts
from polos.runtime.attempts import AttemptSummary
from polos.runtime.journal import RUN_SK, Journal, event_run_id, run_pk
from polos.runtime.records import RunRecord
from polos.testing import local_stack
from polos.timestamps import utc_iso

from bench import monthly

LONG = "card declined: " + "x" * 400  # past the summary's 300 characters
outcomes: dict[str, str] = {}  # key -> what the next execution does: "fail", "fatal", else completes


def _charge(key: str) -> str:
    what = outcomes.get(key, "")
    if what in ("fail", "fail-once"):
        outcomes[key] = "" if what == "fail-once" else what
        raise ConnectionError(LONG)
    if what == "fatal":
        raise NonRetryableError(LONG)
    return "charged"


@workflow(id="cr-charge", max_attempts=1)
async def charge(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return await ctx.step.run("charge", _charge, payload["key"])


@workflow(id="cr-retry", max_attempts=3)
async def retry(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return _charge(payload["key"])  # outside a step: a failure ends the execution


@workflow(id="cr-event", trigger_on_event="cr/event")
async def on_event(ctx: WorkflowContext, payload: Any) -> int:
    await ctx.step.run("count", lambda: 1)
    return int(payload.sequence_id)


APP = App("compact-run-item", [charge, retry, on_event])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    outcomes.clear()
    return provision(APP, tmp_path, monkeypatch)


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[AttemptSummary]]:
    """Each run's attempt summaries as the executor hands them to ``Journal.finish``, finished when the
    write that ends the execution stamps the run (``updated_at``): what the code before issue 26 stored,
    whole, in ``attempt#<n>`` (it took its own clock reading a few microseconds before)."""
    seen: dict[str, list[AttemptSummary]] = {}
    finish = Journal.finish

    def spy(self: Journal, run_id: str, *args: Any, **kwargs: Any) -> bool:
        cancel_asked = finish(self, run_id, *args, **kwargs)
        if kwargs.get("attempt") is not None:
            stamp = run_item(run_id)["updated_at"]["S"]
            seen.setdefault(run_id, []).append(replace(kwargs["attempt"], finished_at=stamp))
        return cancel_asked

    monkeypatch.setattr(Journal, "finish", spy)
    return seen


def run_item(run_id: str) -> dict[str, Any]:
    key = {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}}
    return dict(settings.dynamodb().get_item(TableName=settings.get_settings().runs_table, Key=key)["Item"])


def put_item(item: dict[str, Any]) -> None:
    settings.dynamodb().put_item(TableName=settings.get_settings().runs_table, Item=item)


def start(api: Api, key: str) -> str:
    answer = api("POST", "/api/v1/workflows/cr-charge/run", {"payload": {"key": key}})
    assert answer.status == 202, answer.json
    return str(answer.json["run_id"])


def as_stored_before(summary: AttemptSummary) -> dict[str, Any]:
    """The history entry the code before issue 26 showed for ``summary``: its stored JSON, read back."""
    return dict(json.loads(summary.to_json()))


def old_format(item: dict[str, Any], summary: AttemptSummary) -> dict[str, Any]:
    """``item`` as the code before issue 26 wrote it: the summary whole in ``attempt#<n>``, a single-event
    run's ``trigger_type``, a kept step's ``status`` and ``attempts`` (1) in its map, its ``idx`` and its
    times as ISO texts."""
    old = {name: value for name, value in item.items() if name != attempts.DURATION_ATTRIBUTE}
    old[summary.attribute] = {"S": summary.to_json()}
    old.setdefault("trigger_type", {"S": "event"})
    for name, value in item.items():
        if name.startswith("step#"):
            fields = {key: field for key, field in value["M"].items() if key not in ("at", "took")}
            started = int(value["M"]["at"]["N"])
            fields["started_at"] = {"S": _iso_us(started)}
            fields["finished_at"] = {"S": _iso_us(started + int(value["M"]["took"]["N"]))}
            fields.setdefault("idx", {"N": "0"})
            old[name] = {"M": {"status": {"S": "completed"}, "attempts": {"N": "1"}, **fields}}
    return old


def _iso_us(epoch_us: int) -> str:
    return utc_iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_us))


@pytest.mark.parametrize("outcome", ["completed", "fatal"])
def test_a_run_ended_by_its_first_execution_keeps_no_attempt_summary_and_shows_the_same_history(
    urls: dict[str, str], written: dict[str, list[AttemptSummary]], outcome: str
) -> None:
    api = Api()
    if outcome == "fatal":
        outcomes["k"] = "fatal"
    run_id = start(api, "k")
    Pump(APP, urls).drain()
    item = run_item(run_id)
    assert [name for name in item if name.startswith(attempts.SUMMARY_PREFIX)] == []
    [summary] = written[run_id]
    view = api("GET", f"/api/v1/runs/{run_id}").json
    assert (view["status"], view["attempts"]) == (summary.outcome, 1)
    [shown] = view["attempt_history"]
    before = as_stored_before(summary)
    if summary.error is not None:  # a failed execution's traceback is read from its own item, as before
        before["error"]["traceback"] = shown["error"]["traceback"]
        assert "ConnectionError" not in shown["error"]["traceback"]
        assert shown["error"]["message"].endswith("…") and len(shown["error"]["message"]) == 301
    for field in ("attempt", "started_at", "finished_at", "outcome", "error"):
        assert shown.get(field) == before.get(field), field
    assert shown == before

    # The same run as the code before wrote it: every reader's answer is the same.
    put_item(old_format(item, summary))
    assert api("GET", f"/api/v1/runs/{run_id}").json == view


def test_a_run_failed_by_its_first_execution_then_redriven_shows_both_executions(
    urls: dict[str, str], written: dict[str, list[AttemptSummary]]
) -> None:
    api = Api()
    outcomes["r"] = "fail"  # retryable, but max_attempts=1: failed and dead-lettered
    run_id = start(api, "r")
    Pump(APP, urls).drain()
    assert api("GET", f"/api/v1/runs/{run_id}").json["status"] == "failed"
    outcomes["r"] = ""
    answer = api("POST", "/api/v1/workflows/cr-charge/dead-letters/redrive")
    assert answer.json["moved"] == 1, answer.json
    Pump(APP, urls).drain()
    view = api("GET", f"/api/v1/runs/{run_id}").json
    assert (view["status"], view["attempts"]) == ("completed", 2)
    first, second = written[run_id]
    history = view["attempt_history"]
    assert [entry["outcome"] for entry in history] == ["failed", "completed"]
    shown_first = dict(history[0])
    assert "in _charge" in shown_first["error"].pop("traceback")
    assert shown_first == as_stored_before(first)
    assert history[1] == as_stored_before(second)
    # The step's calls of both executions: a count other than 1 stays in the kept step's map.
    calls = int(run_item(run_id)["step#charge"]["M"]["attempts"]["N"])
    assert calls > 1 and [step["attempts"] for step in view["steps"]] == [calls]


def test_a_two_execution_run_keeps_both_summaries_whole(
    urls: dict[str, str], written: dict[str, list[AttemptSummary]]
) -> None:
    """A first execution that does not end the run (retried) and later ones keep their summaries whole."""
    api = Api()
    outcomes["t"] = "fail-once"
    answer = api("POST", "/api/v1/workflows/cr-retry/run", {"payload": {"key": "t"}})
    run_id = str(answer.json["run_id"])
    Pump(APP, urls).drain()
    item = run_item(run_id)
    assert sorted(name for name in item if name.startswith(attempts.SUMMARY_PREFIX)) == [
        "attempt#1",
        "attempt#2",
    ]
    assert attempts.DURATION_ATTRIBUTE not in item
    history = api("GET", f"/api/v1/runs/{run_id}").json["attempt_history"]
    first, second = written[run_id]
    assert [entry["outcome"] for entry in history] == ["retried", "completed"]
    assert "in _charge" in history[0]["error"].pop("traceback")
    assert history == [as_stored_before(first), as_stored_before(second)]


def test_the_headline_run_item_keeps_no_default_and_reads_as_before(
    urls: dict[str, str], written: dict[str, list[AttemptSummary]]
) -> None:
    """A single-event run's item: no summary, no ``trigger_type`` (its ``wid`` says ``event``), its kept
    step without ``status`` (kept steps are completed) and ``attempts`` 1; an old item reads the same."""
    [event] = publish("cr/event", {"n": 1})
    Pump(APP, urls).drain()
    run_id = event_run_id("cr-event", "cr/event", event.sequence_id)
    item = run_item(run_id)
    assert item["status"] == {"S": "completed"} and "wid" in item
    assert [name for name in item if name.startswith(attempts.SUMMARY_PREFIX)] == []
    assert "trigger_type" not in item
    assert sorted(item["step#count"]["M"]) == ["at", "result", "took"]
    view = Api()("GET", f"/api/v1/runs/{run_id}").json
    assert view["trigger"]["type"] == "event"
    assert [(step["key"], step["status"], step["attempts"]) for step in view["steps"]] == [
        ("count", "completed", 1)
    ]
    [shown] = view["attempt_history"]
    [summary] = written[run_id]
    assert shown == as_stored_before(summary) and shown["finished_at"] == view["updated_at"]

    # What bench --only targets counts as saved is what this item saves on the item written before.
    saved = item_size(old_format(item, summary)) - item_size(item)
    took = int(item["step#count"]["M"]["took"]["N"])
    assert sum(monthly.run_item_bytes_saved(int(item[attempts.DURATION_ATTRIBUTE]["N"]), took)) == saved

    put_item(old_format(item, summary))
    assert Api()("GET", f"/api/v1/runs/{run_id}").json == view


def test_a_first_execution_queued_for_a_slot_then_ending_the_run_leaves_no_stale_summary(
    urls: dict[str, str],
) -> None:
    """An execution queued for a concurrency slot ran nothing and gives its count back, so the next one is
    number 1 again: when that one ends the run, the summary the first wrote (``deferred``) goes."""
    journal = Journal()

    def take(owner: str) -> RunRecord:
        taken = journal.acquire(
            run_id="run_slot1",
            workflow_id="cr-charge",
            trigger_type="invoke",
            event_refs=[],
            owner=owner,
            lease_seconds=60,
        )
        assert taken.outcome == "acquired" and taken.run is not None
        return taken.run

    first = take("o1")
    queued = attempts.summary(first, "queued", None, True, "2026-01-01T00:00:00.000000Z")
    journal.finish("run_slot1", "o1", "queued", attempt=queued, uncounted=True, unexecuted=True)
    assert "attempt#1" in run_item("run_slot1")
    again = take("o2")
    assert again.attempts == 1
    ended = attempts.summary(again, "completed", None, False, "2026-01-01T00:00:00.000000Z")
    journal.finish("run_slot1", "o2", "completed", result_json="1", attempt=ended)
    item = run_item("run_slot1")
    assert [name for name in item if name.startswith(attempts.SUMMARY_PREFIX)] == []
    [shown] = Api()("GET", "/api/v1/runs/run_slot1").json["attempt_history"]
    assert (shown["attempt"], shown["outcome"], shown["started_at"]) == (1, "completed", again.updated_at)


@workflow(id="cr-event-nap", trigger_on_event="cr/nap")
async def on_event_nap(ctx: WorkflowContext, payload: Any) -> int:
    await ctx.step.wait_for("nap", minutes=5)
    return int(payload.sequence_id)


def test_a_woken_single_event_run_stays_out_of_the_runs_index() -> None:
    """Its event lists it (``wid``): the wake-up's lease take (an ``invoke`` message) adds no ``wf`` (an
    index write and the entry's storage for nothing: listings show the run once either way)."""
    with local_stack(App("woken-event-run", [on_event_nap])) as stack:
        [sequence_id] = stack.publish("cr/nap", [{"data": {}}])["sequence_ids"]
        stack.drain()
        run_id = event_run_id("cr-event-nap", "cr/nap", sequence_id)
        assert stack.run(run_id)["status"] == "waiting"
        stack.advance(minutes=6)
        stack.drain()
        assert stack.run(run_id)["status"] == "completed"
        item = run_item(run_id)
        assert "wid" in item and "wf" not in item
        assert [run["run_id"] for run in stack.runs("cr-event-nap")] == [run_id]

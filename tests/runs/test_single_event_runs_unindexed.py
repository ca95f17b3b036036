"""Single-event runs have no ``by_workflow`` index entry (one write unit less per event): the runs API
lists them from their topic's events, merged with the index's runs, with every filter and page by page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.inprocess import Api
from helpers.stack import provision
from helpers.worker import Pump, publish
from polos import NonRetryableError, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.publish.events import BLOCK_EVENTS, EventStore
from polos.runtime import recovery, runs
from polos.runtime.journal import RUN_SK, event_run_id, index_partition, run_pk


@workflow(id="ux-invoked")
async def invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    return "ok"


@workflow(id="ux-event", trigger_on_event="ux/event")
async def on_event(ctx: WorkflowContext, payload: Any) -> int:
    if payload.data.get("explode"):
        raise NonRetryableError("exploded")
    return int(payload.sequence_id)


@workflow(id="ux-twin", trigger_on_event="ux/event")
async def twin(ctx: WorkflowContext, payload: Any) -> str:
    return "twin"


@workflow(id="ux-nap", trigger_on_event="ux/nap")
async def nap(ctx: WorkflowContext, payload: Any) -> str:
    await ctx.step.wait_for("nap", days=payload.data["days"])
    return "rested"


APP = App("unindexed", [invoked, on_event, twin, nap])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision(APP, tmp_path, monkeypatch)


@pytest.fixture
def api(urls: dict[str, str]) -> Api:
    return Api()


@pytest.fixture
def pump(urls: dict[str, str]) -> Pump:
    return Pump(APP, urls)


def run_item(run_id: str) -> dict[str, Any]:
    key = {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}}
    return dict(settings.dynamodb().get_item(TableName=settings.get_settings().runs_table, Key=key)["Item"])


def invoke(api: Api) -> str:
    answer = api("POST", "/api/v1/workflows/ux-invoked/run", {"payload": {}})
    assert answer.status == 202, answer.json
    return str(answer.json["run_id"])


def every_page(api: Api, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Every run a listing shows, following its cursors; and how many pages it took."""
    listed: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        page = api("GET", "/api/v1/runs", query={**query, "cursor": cursor}).json
        listed += page["runs"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return listed, pages


def test_a_single_event_run_has_no_index_key_and_an_invoked_run_keeps_its_entry(api: Api, pump: Pump) -> None:
    [event] = publish("ux/event", {})
    started = invoke(api)
    pump.drain()
    single = run_item(event_run_id("ux-event", event.topic, event.sequence_id))
    assert "wf" not in single, "a single-event run item must not carry the by_workflow index key"
    assert single["wid"] == {"S": "ux-event"} and single["status"] == {"S": "completed"}
    assert run_item(started)["wf"] == {"S": index_partition("ux-invoked", started)}
    shown = api("GET", f"/api/v1/runs/{event_run_id('ux-event', event.topic, event.sequence_id)}").json
    assert shown["workflow_id"] == "ux-event"


def test_single_event_runs_are_listed_with_every_filter_page_by_page(api: Api, pump: Pump) -> None:
    first = invoke(api)
    events = publish("ux/event", {}, {"explode": True}, {})
    events += publish("ux/event", {}, {"explode": True})
    last = invoke(api)
    pump.drain()
    singles = {event_run_id("ux-event", e.topic, e.sequence_id): e for e in events}
    twins = {event_run_id("ux-twin", e.topic, e.sequence_id) for e in events}
    every, pages = every_page(api, limit=2)
    assert sorted(run["run_id"] for run in every) == sorted([first, last, *singles, *twins])
    stamps = [run["created_at"] for run in every]
    assert stamps == sorted(stamps, reverse=True) and pages == 6  # one publish's events: newest first
    # A single-event run is created at its event's time (where the listing places it).
    for run in every:
        if run["run_id"] in singles:
            assert run["created_at"] == singles[run["run_id"]].model_dump(mode="json")["created_at"]

    mine, _ = every_page(api, workflow_id="ux-event", limit=2)
    newest = sorted(singles, key=lambda r: singles[r].sequence_id, reverse=True)
    assert [run["run_id"] for run in mine] == newest
    failed, _ = every_page(api, workflow_id="ux-event", status="failed", limit=1)
    exploded = {event_run_id("ux-event", e.topic, e.sequence_id) for e in events if e.data.get("explode")}
    assert {run["run_id"] for run in failed} == exploded and len(failed) == 2
    completed = api("GET", "/api/v1/runs", query={"workflow_prefix": "ux-", "status": "completed"}).json
    assert len(completed["runs"]) == 2 + 3 + 5 and completed["next_cursor"] is None

    second_batch = events[3].model_dump(mode="json")["created_at"]
    after, _ = every_page(api, workflow_id="ux-event", created_after=second_batch, limit=1)
    assert {run["run_id"] for run in after} == {r for r, e in singles.items() if e.sequence_id > 3}
    first_batch = events[0].model_dump(mode="json")["created_at"]
    before, _ = every_page(api, workflow_id="ux-event", created_before=first_batch)
    assert {run["run_id"] for run in before} == {r for r, e in singles.items() if e.sequence_id <= 3}


def test_a_run_indexed_before_is_listed_once(api: Api, pump: Pump) -> None:
    events = publish("ux/event", {}, {})
    pump.drain()
    old = event_run_id("ux-event", events[0].topic, events[0].sequence_id)
    settings.dynamodb().update_item(  # a run item written before single-event runs left the index
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": run_pk(old)}, "sk": {"S": RUN_SK}},
        UpdateExpression="SET wf = :wf REMOVE wid",
        ExpressionAttributeValues={":wf": {"S": index_partition("ux-event", old)}},
    )
    listed, _ = every_page(api, workflow_id="ux-event", limit=1)
    assert sorted(run["run_id"] for run in listed) == sorted(
        event_run_id("ux-event", e.topic, e.sequence_id) for e in events
    )
    assert all(run["workflow_id"] == "ux-event" for run in listed)


def test_events_without_a_run_are_passed_within_the_page_budget(
    api: Api, pump: Pump, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = publish("ux/event", {})
    pump.drain()
    publish("ux/event", *({} for _ in range(9)))  # not delivered yet: no runs
    monkeypatch.setattr(runs, "PAGE_SCAN_BUDGET", 4)
    first = api("GET", "/api/v1/runs", query={"workflow_id": "ux-event"}).json
    assert first["runs"] == [] and first["next_cursor"] is not None  # 4 entries passed, none with a run
    listed, pages = every_page(api, workflow_id="ux-event")
    assert [run["run_id"] for run in listed] == [event_run_id("ux-event", ran[0].topic, ran[0].sequence_id)]
    assert pages == 3  # 10 entries, 4 a page


def test_bulk_rerun_acts_on_single_event_runs(api: Api, pump: Pump) -> None:
    events = publish("ux/event", {"explode": True}, {}, {"explode": True})
    pump.drain()
    wanted = recovery.RunFilter("ux-event", status="failed")
    done = recovery.bulk("rerun", wanted, wanted.operation("rerun"), limit=1)
    assert done.matched == 1 and done.next_cursor is not None
    rest = recovery.bulk("rerun", wanted, wanted.operation("rerun"), cursor=done.next_cursor)
    assert rest.matched == 1 and rest.next_cursor is None
    sources = {event_run_id("ux-event", e.topic, e.sequence_id) for e in events if e.data.get("explode")}
    made = [recovery.rerun_id(source, wanted.operation("rerun")) for source in sources]
    assert all(run_item(run_id)["rerun_of"]["S"] in sources for run_id in made)


def test_a_time_bound_starts_a_topics_stream_within_a_block_of_its_events(urls: dict[str, str]) -> None:
    firsts = [publish("ux/quiet", *({} for _ in range(n)))[0] for n in (120, 120, 10)]  # no subscriber
    store = EventStore()
    stamps = [first.model_dump(mode="json")["created_at"] for first in firsts]
    # sequence ids 1-120, 121-240, 241-250; blocks of 100: [1, 99], [100, 199], [200, 250]
    assert [store.sequence_before("ux/quiet", stamp) for stamp in stamps] == [199, 250, 250]
    assert store.sequence_before("ux/quiet", "2000-01-01T00:00:00.000000Z") == BLOCK_EVENTS - 1
    assert store.sequence_before("ux/none", stamps[0]) == 0  # a topic with no events


def test_newest_first_reads_past_the_empty_blocks_of_a_publish_that_died(urls: dict[str, str]) -> None:
    store = EventStore()
    [oldest] = publish("ux/holes", {})
    store.reserve("ux/holes", 2 * BLOCK_EVENTS + 50)  # ids reserved, never written: blocks 1 and 2 empty
    [newest] = publish("ux/holes", {})
    read = [sequence_id for sequence_id, event in store.newest_first("ux/holes", newest.sequence_id)]
    assert read == [newest.sequence_id, oldest.sequence_id]


def test_a_single_event_run_kept_past_the_retention_gets_its_index_entry(api: Api, pump: Pump) -> None:
    [long, short] = publish("ux/nap", {"days": 60}, {"days": 1})
    pump.drain()
    napping = event_run_id("ux-nap", long.topic, long.sequence_id)
    # Its event's blocks may expire around it (a listing stops after empty blocks): the index lists it.
    assert run_item(napping)["wf"] == {"S": index_partition("ux-nap", napping)}
    assert "wf" not in run_item(event_run_id("ux-nap", short.topic, short.sequence_id))
    listed, _ = every_page(api, workflow_id="ux-nap", limit=1)
    assert sorted(run["run_id"] for run in listed) == sorted(
        event_run_id("ux-nap", e.topic, e.sequence_id) for e in (long, short)
    )
    assert {run["status"] for run in listed} == {"waiting"}

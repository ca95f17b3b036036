"""The ``by_workflow`` index spreads one workflow's runs over INDEX_SHARDS partition keys (a key takes at most
1,000 writes a second); a listing merges them, and the entries of runs made before shards, newest first,
paging without a skip or a repeat, ties on ``created_at`` included."""

from __future__ import annotations

from collections import Counter

import pytest
from polos.aws import settings
from polos.runtime import journal, runs
from polos.runtime.journal import INDEX_SHARDS, Journal, index_partition
from polos.runtime.records import RunRecord, RunStatus


def _store(n: int, stamp: str, workflow_id: str = "ix-a", status: RunStatus = "completed") -> RunRecord:
    run = RunRecord(f"run_ix{n:04d}", workflow_id, status, 1, "invoke", stamp, stamp, payload_json="{}")
    Journal().create_queued(run)
    return run


def _legacy(n: int, stamp: str, workflow_id: str = "ix-a", status: RunStatus = "completed") -> RunRecord:
    """A run item as written before shards: its index partition is the workflow id itself."""
    run = _store(n, stamp, workflow_id, status)
    settings.dynamodb().update_item(
        TableName=settings.get_settings().runs_table,
        Key={"pk": {"S": f"run#{run.run_id}"}, "sk": {"S": "run"}},
        UpdateExpression="SET wf = :wf",
        ExpressionAttributeValues={":wf": {"S": workflow_id}},
    )
    return run


def _pages(limit: int, workflows: list[str]) -> list[str]:
    listed: list[str] = []
    cursor = None
    while True:
        page = runs.list_runs(workflows, None, limit, cursor)
        listed += [view["run_id"] for view in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            return listed
        assert len(listed) < 1000, "the cursor does not advance"


def _partitions() -> Counter[str]:
    items = settings.dynamodb().scan(TableName=settings.get_settings().runs_table)["Items"]
    return Counter(item["wf"]["S"] for item in items if "created_at" in item and "wf" in item)


def test_a_workflows_runs_spread_over_every_shard(stack: dict[str, str]) -> None:
    for n in range(160):
        _store(n, f"2030-01-01T00:00:{n // 10:02d}.{n:06d}Z")
    used = _partitions()
    assert set(used) == {f"ix-a#{shard}" for shard in range(INDEX_SHARDS)}
    assert max(used.values()) <= 25  # crc32 spreads 160 runs over 16 keys: none takes 2.5 times its share
    assert runs.get_run("run_ix0007")["workflow_id"] == "ix-a"  # type: ignore[index]


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_listing_merges_shards_and_older_entries_without_a_skip_or_a_repeat(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(journal, "INDEX_SHARDS", 3)  # the same merge with fewer partitions to read
    stored = [_legacy(n, f"2030-01-01T00:00:{n:02d}.000000Z") for n in range(6)]
    stored += [_store(n, f"2030-01-01T00:00:{n:02d}.000000Z") for n in range(6, 20)]
    # Runs created in the same microsecond, in different partitions and workflows.
    stored += [_store(n, "2030-01-01T00:00:09.500000Z", "ix-b") for n in range(20, 26)]
    stored += [_legacy(n, "2030-01-01T00:00:09.500000Z", "ix-b") for n in range(26, 28)]
    expected = [run.run_id for run in sorted(stored, key=lambda r: (r.created_at, r.run_id), reverse=True)]
    assert _pages(limit, ["ix-a", "ix-b"]) == expected


def test_an_older_run_keeps_its_index_entry_when_it_runs_again(stack: dict[str, str]) -> None:
    run = _legacy(1, "2030-01-01T00:00:01.000000Z", status="queued")
    Journal().acquire(
        run_id=run.run_id,
        workflow_id="ix-a",
        trigger_type="invoke",
        event_refs=[],
        owner="o",
        lease_seconds=30,
    )
    assert _partitions() == {"ix-a": 1}  # no move between partitions (two index writes)
    assert index_partition("ix-a", run.run_id) != "ix-a"

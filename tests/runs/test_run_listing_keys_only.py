"""Run listing over the keys-only ``by_workflow`` index: items fetched by BatchGetItem, in index order,
status filtered after the fetch, pages filled and continued by the cursor without a skip or a repeat."""

from __future__ import annotations

import json
from typing import Any

import pytest
from polos.aws import chunking, settings
from polos.runtime import journal, runs
from polos.runtime.journal import BY_WORKFLOW_INDEX, Journal
from polos.runtime.records import RunRecord, RunStatus

WORKFLOWS = ("lk-a", "lk-b", "lk-c")
STATUSES: tuple[RunStatus, ...] = ("completed", "completed", "failed", "queued", "completed", "cancelled")


def store(workflow_id: str, n: int, status: RunStatus, result: Any = None) -> RunRecord:
    # Distinct creation times, interleaved across workflows (the listing merges them newest first).
    stamp = f"2030-01-01T00:{n // 60:02d}:{n % 60:02d}.000000Z"
    run = RunRecord(
        f"run_lk{n:04d}", workflow_id, status, 1, "invoke", stamp, stamp,
        payload_json="{}", result_json=None if result is None else json.dumps(result),
    )  # fmt: skip
    Journal().create_queued(run)
    return run


def every_page(
    status: RunStatus | None, limit: int, workflows: tuple[str, ...] = WORKFLOWS
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = runs.list_runs(list(workflows), status, limit, cursor)
        pages.append([view["run_id"] for view in page.runs])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 500, "the cursor does not advance"


def test_the_index_projects_keys_only(stack: dict[str, str]) -> None:
    table = settings.dynamodb().describe_table(TableName=settings.get_settings().runs_table)["Table"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == BY_WORKFLOW_INDEX
    assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"


@pytest.mark.parametrize("limit", [1, 2, 5, 7])
def test_filtered_pages_are_full_newest_first_and_never_skip_or_repeat(
    stack: dict[str, str], limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "INDEX_SHARDS", 2)  # fewer partitions per page to read; the same merge
    stored = [
        store(WORKFLOWS[n % 3 if n % 5 else 0], n, STATUSES[(n * 7) % len(STATUSES)]) for n in range(60)
    ]
    newest_first = sorted(stored, key=lambda run: run.created_at, reverse=True)
    for status in (None, "completed", "failed", "queued", "cancelled", "running"):
        expected = [run.run_id for run in newest_first if status is None or run.status == status]
        pages = every_page(status, limit)
        listed = [run_id for page in pages for run_id in page]
        assert listed == expected, status  # every run once, in order
        assert all(len(page) == limit for page in pages[:-1]), (status, [len(p) for p in pages])
        assert len(pages[-1]) <= limit


def test_listed_runs_carry_their_stored_fields_and_results_kept_apart(stack: dict[str, str]) -> None:
    small = store("lk-a", 1, "completed", result={"ok": 1})
    big = store("lk-a", 2, "queued")
    journal = Journal()
    journal.acquire(
        run_id=big.run_id, workflow_id="lk-a", trigger_type="invoke", event_refs=[], owner="o",
        lease_seconds=60, create=False,
    )  # fmt: skip
    huge = {"q": "x" * (370 * 1024)}  # past RUN_ITEM_BUDGET: the result goes to its own item
    journal.finish(big.run_id, "o", "completed", result_json=json.dumps(huge))
    page = runs.list_runs(["lk-a"], None, 10, None)
    by_id = {view["run_id"]: view for view in page.runs}
    assert by_id[small.run_id]["status"] == "completed" and by_id[small.run_id]["result"] == {"ok": 1}
    assert by_id[big.run_id]["status"] == "completed" and by_id[big.run_id]["result"] == huge
    assert by_id[big.run_id]["attempts"] == 2 and by_id[big.run_id]["trigger"]["type"] == "invoke"


class Stingy:
    """A DynamoDB client whose BatchGetItem answers only ``share`` of the keys asked for (the rest come back
    as ``UnprocessedKeys``, as under throttling or past 16 MB of answer)."""

    def __init__(self, share: float) -> None:
        self._client = settings.dynamodb()
        self.share = share
        self.asked: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, wanted),) = RequestItems.items()
        keys = wanted["Keys"]
        self.asked.append(len(keys))
        served = max(1, int(len(keys) * self.share)) if self.share else 0
        answer: dict[str, Any] = {"Responses": {table: []}}
        if served:
            part: Any = {table: {**wanted, "Keys": keys[:served]}}
            answer = dict(self._client.batch_get_item(RequestItems=part))
        left = keys[served:]
        answer["UnprocessedKeys"] = {table: {**wanted, "Keys": left}} if left else {}
        return answer

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def client() -> Stingy:
            return self

        client.cache_clear = lambda: None  # type: ignore[attr-defined]  # settings.reset() clears it
        monkeypatch.setattr(settings, "dynamodb", client)
        monkeypatch.setattr(chunking, "pause", lambda attempt: None)


def test_unprocessed_keys_are_retried_in_calls_of_at_most_100_keys(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [store("lk-a", n, "completed" if n % 4 else "failed") for n in range(230)]
    stingy = Stingy(share=0.5)
    stingy.install(monkeypatch)
    newest_first = [run.run_id for run in sorted(stored, key=lambda run: run.created_at, reverse=True)]
    assert [r for page in every_page(None, 100, ("lk-a",)) for r in page] == newest_first
    assert max(stingy.asked) == 100 and min(stingy.asked) < 100  # halves of what was left, retried
    failed = [r for page in every_page("failed", 9, ("lk-a",)) for r in page]
    assert failed == [run.run_id for run in sorted(stored, key=lambda r: r.created_at, reverse=True)
                      if run.status == "failed"]  # fmt: skip


def test_keys_left_unread_after_every_retry_are_an_error_not_a_short_page(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store("lk-a", 1, "completed")
    stingy = Stingy(share=0.0)
    stingy.install(monkeypatch)
    with pytest.raises(chunking.UnprocessedKeysError, match="1 key"):
        runs.list_runs(["lk-a"], None, 10, None)
    assert len(stingy.asked) == chunking.MAX_ATTEMPTS

"""Runs as the HTTP API shows them (DESIGN §2): reading, listing newest first, and creating invoked runs."""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import heapq
import itertools
import json
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import get_all
from polos.aws.responses import RESPONSE_BUDGET_BYTES, wire_size
from polos.publish.events import EventRef, EventStore
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import attempts, batches, event_flow, event_runs
from polos.runtime.journal import (
    BY_WORKFLOW_INDEX,
    RESULT_SK,
    RUN_SK,
    Journal,
    decode_run,
    event_run_id,
    hashed_run_id,
    index_partitions,
    is_claim,
    now_iso,
    run_pk,
)
from polos.runtime.records import LoadedRun, ParentRef, RunRecord, RunStatus, StepRecord
from polos.runtime.waits import WaitingFor

if TYPE_CHECKING:
    from polos.runtime.journal import Item

RUN_ID = re.compile(r"run_[A-Za-z0-9_-]{1,124}")
CURSOR_VERSION = 3
MAX_PARALLEL_QUERIES = 16  # index partitions read at once by one listing page
# Entries one listing page passes at most (run items fetched, 100 per BatchGetItem): a page of a status
# that few runs have, or of events that have no run, ends short of its limit there, its cursor going on.
PAGE_SCAN_BUDGET = 1000


class InvalidCursorError(ValueError):
    """A ``cursor`` that no listing of runs handed out."""


def valid_run_id(run_id: str) -> bool:
    return RUN_ID.fullmatch(run_id) is not None


def keyed_run_id(workflow_id: str, idempotency_key: str) -> str:
    """The run an ``Idempotency-Key`` stands for: the same key always names the same run of a workflow."""
    return hashed_run_id(workflow_id, idempotency_key)


def single_run_id(message: WorkflowMessage) -> str:
    """The run a message names outside batching: its invoked run, or the run derived from its event."""
    if message.event is None:
        return str(message.run_id)
    return event_run_id(message.workflow_id, message.event.topic, message.event.sequence_id)


def new_run_id() -> str:
    """A random run id (batch runs, invoked runs without an ``Idempotency-Key``)."""
    return "run_" + secrets.token_hex(13)


# --- views -------------------------------------------------------------------------------------------


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def step_view(step: StepRecord, with_result: bool = True) -> dict[str, Any]:
    """A step as the runs API shows it; without its result (marked omitted) unless ``with_result``."""
    view: dict[str, Any] = {
        "key": step.key,
        "status": step.status,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }
    if step.status == "completed" and with_result:
        view["result"] = _json_or_none(step.result_json)
    elif step.status == "completed":
        view["result"], view["result_omitted"] = None, True
    elif step.status == "waiting":
        view["finished_at"] = None
        if step.wait_json is not None:
            view["waiting_for"] = WaitingFor.from_json(step.wait_json).view()
        if step.result_json is not None:  # what a suspend shows while it waits (its ``data``)
            view["data"] = _json_or_none(step.result_json)
    else:
        view["error"] = (
            None if step.error is None else {"type": step.error.type, "message": step.error.message}
        )
    waiting = WaitingFor.from_json(step.wait_json) if step.wait_json is not None else None
    if waiting is not None and waiting.child is not None:
        view["child_run_id"] = waiting.child
    # retries: the last failed call's error, and when a durable retry wait calls the function again
    view["last_error"] = (
        None if step.error is None else {"type": step.error.type, "message": step.error.message}
    )
    retry_at = waiting.view().get("until") if waiting is not None and waiting.kind == "retry" else None
    view["next_attempt_at"] = retry_at if step.status == "waiting" else None
    return view


def _budget_steps(steps: list[StepRecord], budget: int) -> tuple[list[dict[str, Any]], bool]:
    """Step views within ``budget`` bytes, and whether the list was cut.

    Every step's status, attempts and times come first; results then fill what is left, in first-call
    order; a result past the budget is left out (``"result": null, "result_omitted": true``; read it with
    ``?step=<key>``). Should the steps alone pass the budget (tens of thousands of steps), the list stops.
    """
    views: list[dict[str, Any]] = []
    for step in steps:
        view = step_view(step, with_result=False)
        cost = wire_size(view) + 1
        if cost > budget:
            return views, True
        budget -= cost
        views.append(view)
    for index, (view, step) in enumerate(zip(views, steps, strict=False)):
        # A result's JSON text is a lower bound of its share of the response: no need to parse it to
        # know that it does not fit.
        unread = step.result_at is not None and step.result_json is None  # a large result not read
        if not view.get("result_omitted") or unread or len(step.result_json or "") > budget:
            continue
        full = step_view(step)
        extra = wire_size(full) - wire_size(view)
        if extra <= budget:
            budget -= extra
            views[index] = full
    return views, False


def run_view(
    run: RunRecord,
    members: list[EventRef],
    steps: list[StepRecord] | None = None,
    budget: int = RESPONSE_BUDGET_BYTES,
) -> dict[str, Any]:
    """The run as ``GET /api/v1/runs/{run_id}`` shows it (without ``steps`` when ``steps`` is ``None``).

    With ``steps``, the view stays within ``budget`` bytes of response (see :func:`_budget_steps`).
    """
    view: dict[str, Any] = {
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "attempts": run.attempts,
        "result": _json_or_none(run.result_json),
        "error": None if run.error is None else {"type": run.error.type, "message": run.error.message},
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "trigger": {"type": run.trigger_type, "event_ids": [ref.id for ref in members]},
    }
    if (throttled := event_flow.waiting_view(run)) is not None:  # a throttled run keeps its own shape
        view["waiting_for"] = throttled
    elif run.status in ("waiting", "queued") and run.waiting_for_json is not None:
        view["waiting_for"] = WaitingFor.from_json(run.waiting_for_json).view()
    if run.parent is not None:
        view["parent_run_id"] = run.parent.run_id
    if run.state_json is not None or run.initial_state_json is not None:
        view["state"] = _json_or_none(run.state_json or run.initial_state_json)
    if run.rerun_of is not None:
        view["rerun_of"] = run.rerun_of
    if steps is not None:
        view["steps"], truncated = _budget_steps(steps, budget - wire_size(view))
        if truncated:
            view["steps_truncated"] = True
        children = [
            child
            for child in (WaitingFor.from_json(step.wait_json).child for step in steps if step.wait_json)
            if child is not None
        ]
        if children:  # runs started by invoke / invoke_and_wait, in step order
            view["children"] = children
    return view


def _members(run: RunRecord, items: list[Item] | None = None) -> list[EventRef]:
    """The events that triggered ``run``: its event, or its batch's members (from ``items`` when given)."""
    if run.trigger_type != "batch":
        return list(run.event_refs)
    return batches.members(items) if items is not None else batches.load_members(run.run_id)


def _load(run_id: str, *, steps: bool = True) -> tuple[LoadedRun, list[Item]] | None:
    """The run (with its steps, their large results not read yet) and the items read (one Query, of
    neither large results nor, without ``steps``, steps), or ``None`` when there is no such run."""
    if not valid_run_id(run_id):
        return None
    items = Journal().query_run(run_id, steps=steps)
    loaded = Journal.decode_partition(items)
    return None if loaded is None else (loaded, items)


def _held_results(view: dict[str, Any], steps: list[StepRecord], budget: int) -> list[StepRecord]:
    """The steps whose large results the answer can hold: in first-call order, while the results known so
    far and these fit ``budget`` bytes with the answer ``view`` (its steps without large results)."""
    left = budget - wire_size(view)
    held: list[StepRecord] = []
    for step in steps:
        if step.status != "completed":
            continue
        size = step.result_bytes if step.result_at is not None else len(step.result_json or "")
        if size > left:
            continue
        left -= size
        if step.result_at is not None:
            held.append(step)
    return held


class NoSuchStepError(LookupError):
    """The run has no step under the key asked for."""


def get_run(run_id: str, step_key: str | None = None) -> dict[str, Any] | None:
    """The run with its steps, or ``None``. With ``step_key``, only that step, result included: read with
    the run item alone (its partition may be megabytes of other steps)."""
    if step_key is None:
        found = _load(run_id)
        if found is None:
            return None
        loaded, items = found
        members = _members(loaded.run, items)
        summary = run_view(loaded.run, members, [])
        summary["steps"] = [step_view(step, with_result=False) for step in loaded.steps]
        Journal().load_results(run_id, _held_results(summary, loaded.steps, RESPONSE_BUDGET_BYTES))
        view = run_view(loaded.run, members, loaded.steps)
        run_item = next(item for item in items if item.get("sk", {}).get("S") == RUN_SK)
        view["attempt_history"] = attempts.history(loaded.run, run_item, items)
        if loaded.run.dead_letter:  # its message is in the workflow's dead-letter queue (redrive reruns it)
            view["dead_lettered"] = True
        return view
    if not valid_run_id(run_id):
        return None
    journal = Journal()
    one = journal.load_step(run_id, step_key)
    if one is None:
        return None
    if not one.steps:
        raise NoSuchStepError(f"run {run_id!r} has no step {step_key!r}")
    return run_view(journal.load_result(one.run), _members(one.run), one.steps)


def get_execution(run_id: str) -> dict[str, Any] | None:
    """The run in the shape of the Polos SDK's executions (its input as ``payload``)."""
    found = _load(run_id, steps=False)
    if found is None:
        return None
    run, items = found[0].run, found[1]
    view: dict[str, Any] = {
        "id": run.run_id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "payload": None,
        "result": _json_or_none(run.result_json),
        "error": None if run.error is None else {"type": run.error.type, "message": run.error.message},
        "created_at": run.created_at,
        "completed_at": run.updated_at if run.finished else None,
        "retry_count": max(run.attempts - 1, 0),
    }
    view.update(_payload(run, items, RESPONSE_BUDGET_BYTES - wire_size(view)))
    return view


def stored_payload(run: RunRecord, items: list[Item]) -> Any:
    """What the handler received: the stored input of an invoked or scheduled run, else its event(s) from
    the store (the executor rebuilds a woken run's input from it)."""
    if run.trigger_type in ("invoke", "schedule"):
        return _json_or_none(run.payload_json)
    events = [event.model_dump(mode="json") for event in EventStore().get_many(_members(run, items))]
    if run.trigger_type != "batch":
        return events[0] if events else None
    return {"events": events}


def _payload(run: RunRecord, items: list[Item], budget: int) -> dict[str, Any]:
    """``stored_payload`` within ``budget`` bytes: a batch's events past it are left out of ``payload`` and
    named by id in ``payload_omitted_event_ids`` (``GET /api/v1/events`` reads them)."""
    payload = stored_payload(run, items)
    if run.trigger_type != "batch":
        return {"payload": payload}
    events: list[dict[str, Any]] = payload["events"]
    kept: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        cost = wire_size(event) + 1
        if cost > budget:
            return {
                "payload": {"events": kept},
                "payload_omitted_event_ids": [e["id"] for e in events[index:]],
            }
        budget -= cost
        kept.append(event)
    return {"payload": {"events": kept}}


# --- listing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPage:
    runs: list[dict[str, Any]]
    next_cursor: str | None


_Entry = tuple[str, str]  # (created_at, run id): the listing's order, newest first
Entry = event_runs.Entry


@dataclass
class Cursor:
    """Where a listing stands: the index entries after ``before``, each topic's events after its position.

    When the merge hands out an entry, every index entry not handed out yet is older (the entry was the
    newest head of every stream), so ``before`` is the oldest entry passed, of any stream; a topic's events
    are not strictly in time order, so its stream goes on from its own last event instead."""

    before: _Entry | None = None
    topics: dict[str, event_runs.Position] = field(default_factory=dict)

    def passed(self, entry: Entry) -> None:
        created_at, run_id, topic, sequence_id = entry
        if self.before is None or (created_at, run_id) < self.before:
            self.before = (created_at, run_id)
        if topic:
            self.topics[topic] = (sequence_id, run_id)

    def encode(self) -> str:
        body = {
            "v": CURSOR_VERSION,
            "before": None if self.before is None else list(self.before),
            "topics": {topic: list(position) for topic, position in self.topics.items()},
        }
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
            raise ValueError("unknown cursor version")
        before = None if body["before"] is None else (str(body["before"][0]), str(body["before"][1]))
        topics = {str(topic): (int(seq), str(run_id)) for topic, (seq, run_id) in body["topics"].items()}
        return Cursor(before, topics)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, binascii.Error) as exc:
        raise InvalidCursorError(
            "cursor is invalid; pass the next_cursor of a previous page unchanged"
        ) from exc


def fetch_runs(entries: list[Entry]) -> dict[Entry, RunRecord]:
    """The run items of ``entries`` (BatchGetItem: the index projects keys only). Not in the answer: a run
    removed since the index was read (a discarded queued run), and for an event's entry, no run (the event
    has none yet, or a batch run claimed it) or a run in the index (made before single-event runs left it:
    its index entry lists it)."""
    table = settings.get_settings().runs_table
    found = get_all(settings.dynamodb(), table, [(run_pk(entry[1]), RUN_SK) for entry in entries])
    runs: dict[Entry, RunRecord] = {}
    for entry in entries:
        item = found.get((run_pk(entry[1]), RUN_SK))
        if item is not None and not is_claim(item) and not (entry[2] and "wf" in item):
            runs[entry] = decode_run(item)
    return runs


def with_results(runs: list[RunRecord]) -> None:
    """Fill in the results kept in their own items (one BatchGetItem for all of ``runs``)."""
    apart = [run for run in runs if run.result_apart and run.result_json is None]
    if not apart:
        return
    table = settings.get_settings().runs_table
    found = get_all(settings.dynamodb(), table, [(run_pk(run.run_id), RESULT_SK) for run in apart])
    for run in apart:
        item = found.get((run_pk(run.run_id), RESULT_SK))
        run.result_json = None if item is None else item["result"]["S"]


def _index_query(
    partition: str, before: _Entry | None, page_size: int, after: str | None = None
) -> dict[str, Any]:
    """The Query of one ``by_workflow`` partition's entries not newer than ``before`` (nor older than
    ``after``), newest first."""
    kwargs: dict[str, Any] = {
        "TableName": settings.get_settings().runs_table,
        "IndexName": BY_WORKFLOW_INDEX,
        "KeyConditionExpression": "wf = :wf",
        "ExpressionAttributeValues": {":wf": {"S": partition}},
        "ScanIndexForward": False,
        "Limit": page_size,
    }
    if before is not None:
        kwargs["ExpressionAttributeValues"][":before"] = {"S": before[0]}
    if after is not None:
        kwargs["ExpressionAttributeValues"][":after"] = {"S": after}
    bounds = {(True, False): " AND created_at <= :before", (False, True): " AND created_at >= :after"}
    bounds[(True, True)] = " AND created_at BETWEEN :after AND :before"
    kwargs["KeyConditionExpression"] += bounds.get((before is not None, after is not None), "")
    return kwargs


def _index_entries(query: dict[str, Any], first: Future[Any], before: _Entry | None) -> Iterator[Entry]:
    """One partition's entries older than ``before``, newest first (ties on ``created_at`` by run id,
    descending: the order every stream of the merge keeps); ``first`` is the answer to ``query`` (sent
    ahead, with the other partitions'), later pages are read as the merge gets to them."""
    ties: list[Entry] = []  # entries of one created_at, held until the next one (the index orders no ties)
    page = first.result()
    while True:
        for item in page.get("Items", []):
            entry = (item["created_at"]["S"], item["pk"]["S"].removeprefix("run#"), "", 0)
            if ties and entry[0] != ties[0][0]:
                yield from sorted(ties, reverse=True)
                ties = []
            if before is None or entry[:2] < before:
                ties.append(entry)
        if "LastEvaluatedKey" not in page:
            yield from sorted(ties, reverse=True)
            return
        query = {**query, "ExclusiveStartKey": page["LastEvaluatedKey"]}
        page = settings.dynamodb().query(**query)


def list_runs(
    workflow_ids: list[str],
    status: RunStatus | None,
    limit: int,
    cursor: str | None,
    created_after: str | None = None,
    created_before: str | None = None,
) -> RunPage:
    """One page of the runs of ``workflow_ids``, newest first (``InvalidCursorError`` on a bad cursor).

    Every index partition of every workflow (:func:`~polos.runtime.journal.index_partitions`) is read as
    a stream, newest first (their first pages at once), and so is each topic's events for its single-event
    workflows (:mod:`polos.runtime.event_runs`); the streams are merged, runs are fetched a page of entries
    at a time and the status filter applied after the fetch, until the page is full, every stream is spent
    or the page passed ``PAGE_SCAN_BUDGET`` entries. The cursor holds where each stream stopped: the last
    index entry the page went past (the next page takes the entries older than it) and each topic's last
    event. ``created_after``/``created_before`` (timestamps as the runs show them; a single-event run's is
    its event's) bound the index Queries themselves: a time range reads only its entries.
    """
    position = decode_cursor(cursor) if cursor else Cursor()
    bound = None if created_before is None else (created_before, "\uffff")  # inclusive: run ids sort below
    if bound is not None and (position.before is None or bound < position.before):
        position.before = bound
    with merged_entries(workflow_ids, position, limit + 1, created_after, bound) as merged:
        return _page(merged, position, status, limit)


@contextlib.contextmanager
def merged_entries(
    workflow_ids: list[str],
    position: Cursor,
    page_size: int,
    after: str | None = None,
    created_before: _Entry | None = None,
) -> Iterator[Iterator[Entry]]:
    """The entries of ``workflow_ids`` after ``position`` (older than ``created_before``, not older than
    ``after``), newest first: every index partition and every single-event topic read as a stream (the
    partitions' first pages at once) and the streams merged. ``position`` gets every topic's start."""
    before = position.before
    queries = [
        _index_query(partition, before, page_size, after)
        for workflow_id in workflow_ids
        for partition in index_partitions(workflow_id)
    ]
    topics = event_runs.single_event_topics(workflow_ids)
    # A topic the cursor has no position for (a first page; a workflow new since the last page) starts
    # above its last event, at the cursor's time; a page that passes none of its events still records that.
    bounds = {topic: created_before if topic in position.topics else before for topic in topics}
    for topic in topics:
        position.topics[topic] = event_runs.start(topic, position.topics.get(topic), bounds[topic])
    with ThreadPoolExecutor(max_workers=min(len(queries), MAX_PARALLEL_QUERIES) or 1) as pool:
        # Every partition's first page at once: a page's latency is one round trip, not one per partition.
        client = settings.dynamodb()

        def query_page(query: dict[str, Any]) -> Any:
            return client.query(**query)

        # Each in the caller's context (logging, tracing): a pool's threads do not inherit it.
        firsts = [pool.submit(contextvars.copy_context().run, query_page, query) for query in queries]
        streams = [_index_entries(query, first, before) for query, first in zip(queries, firsts, strict=True)]
        streams += [
            event_runs.entries(topic, ids, position.topics[topic], bounds[topic], after, page_size)
            for topic, ids in topics.items()
        ]
        yield heapq.merge(*streams, reverse=True)


def _page(merged: Iterator[Entry], position: Cursor, status: RunStatus | None, limit: int) -> RunPage:
    """Up to ``limit`` runs of the merged entries (with ``status`` only), within the response budget and
    ``PAGE_SCAN_BUDGET`` entries; ``position`` moves past every entry the page passes."""
    views: list[dict[str, Any]] = []
    budget = RESPONSE_BUDGET_BYTES
    scanned = 0
    while len(views) < limit and scanned < PAGE_SCAN_BUDGET:
        entries = list(itertools.islice(merged, min(limit - len(views), PAGE_SCAN_BUDGET - scanned)))
        if not entries:
            return RunPage(views, None)
        scanned += len(entries)
        fetched = fetch_runs(entries)
        matching = {
            entry: run
            for entry in entries
            if (run := fetched.get(entry)) is not None and (status is None or run.status == status)
        }
        with_results(list(matching.values()))
        for entry in entries:
            run = matching.get(entry)
            if run is not None:
                view = run_view(run, _members(run))
                cost = wire_size(view) + 1
                if views and cost > budget:  # the page stops at the byte budget; the cursor continues it
                    return RunPage(views, position.encode())
                budget -= cost
                views.append(view)
            position.passed(entry)
    more = next(merged, None) is not None
    return RunPage(views, position.encode() if more else None)


# --- invoked runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What an invocation may set on its run beyond the payload (the invoke arguments, a rerun's origin)."""

    run_timeout_seconds: int | None = None
    initial_state_json: str | None = None
    rerun_of: str | None = None
    from_step: str | None = None
    rerun_op: str | None = None
    # The caller's ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key`` (polos.runtime.slots).
    queue_json: str | None = None


def create_invoked(
    workflow_id: str,
    payload_json: str,
    idempotency_key: str | None,
    *,
    run_id: str | None = None,
    parent: ParentRef | None = None,
    options: RunOptions | None = None,
) -> tuple[RunRecord, bool]:
    """Store a ``queued`` run; returns it and ``True``, or the run the key (or ``run_id``: a child run's,
    a rerun's) created before and ``False``."""
    if run_id is None:
        run_id = keyed_run_id(workflow_id, idempotency_key) if idempotency_key is not None else new_run_id()
    stamp = now_iso()
    run = RunRecord(
        run_id=run_id,
        workflow_id=workflow_id,
        status="queued",
        attempts=0,
        trigger_type="invoke",
        created_at=stamp,
        updated_at=stamp,
        payload_json=payload_json,
        parent=parent,
        queue_json=None if options is None else options.queue_json,
    )
    if options is not None:
        run.run_timeout_seconds = options.run_timeout_seconds
        run.initial_state_json = options.initial_state_json
        run.rerun_of, run.from_step, run.rerun_op = options.rerun_of, options.from_step, options.rerun_op
    stored = Journal().create_queued(run)
    return stored, stored is run


def enqueue(run: RunRecord) -> None:
    """Send the run's ``invoke`` message to its workflow's queue."""
    enqueue_many([run])


def enqueue_many(runs: list[RunRecord]) -> None:
    """Send the runs' ``invoke`` messages (SendMessageBatch, 10 a call)."""
    deliver([WorkflowMessage(workflow_id=run.workflow_id, kind="invoke", run_id=run.run_id) for run in runs])


def discard_queued(run_id: str) -> None:
    """Remove a ``queued`` run whose message could not be sent (so a failed request stores nothing)."""
    try:
        settings.dynamodb().delete_item(
            TableName=settings.get_settings().runs_table,
            Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":queued": {"S": "queued"}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise

"""Runs as the HTTP API shows them (DESIGN §2): reading, listing newest first, and creating invoked runs."""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import get_all
from polos.aws.responses import RESPONSE_BUDGET_BYTES, wire_size
from polos.publish.events import EventRef, EventStore
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import batches
from polos.runtime.journal import (
    BY_WORKFLOW_INDEX,
    RESULT_SK,
    RUN_SK,
    Journal,
    decode_run,
    event_run_id,
    hashed_run_id,
    now_iso,
    run_pk,
)
from polos.runtime.records import LoadedRun, ParentRef, RunRecord, RunStatus, StepRecord
from polos.runtime.waits import WaitingFor

if TYPE_CHECKING:
    from polos.runtime.journal import Item

RUN_ID = re.compile(r"run_[A-Za-z0-9_-]{1,124}")
CURSOR_VERSION = 1


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
    else:
        view["error"] = (
            None if step.error is None else {"type": step.error.type, "message": step.error.message}
        )
    child = WaitingFor.from_json(step.wait_json).child if step.wait_json is not None else None
    if child is not None:
        view["child_run_id"] = child
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
    if run.status == "waiting" and run.waiting_for_json is not None:
        view["waiting_for"] = WaitingFor.from_json(run.waiting_for_json).view()
    if run.parent is not None:
        view["parent_run_id"] = run.parent.run_id
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
        return run_view(loaded.run, members, loaded.steps)
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


@dataclass
class _Position:
    """Where listing one workflow's runs continues: after ``after`` (created_at, run id), or nowhere."""

    after: tuple[str, str] | None = None
    done: bool = False


def _encode_cursor(positions: dict[str, _Position]) -> str:
    body = {
        "v": CURSOR_VERSION,
        "after": {wf: list(pos.after) for wf, pos in positions.items() if pos.after and not pos.done},
        "done": sorted(wf for wf, pos in positions.items() if pos.done),
    }
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, _Position]:
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
            raise ValueError("unknown cursor version")
        positions = {str(wf): _Position(after=(str(at[0]), str(at[1]))) for wf, at in body["after"].items()}
        for wf in body["done"]:
            positions[str(wf)] = _Position(done=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, binascii.Error) as exc:
        raise InvalidCursorError(
            "cursor is invalid; pass the next_cursor of a previous page unchanged"
        ) from exc
    return positions


@dataclass
class _Scanned:
    """What one workflow's listing read: ``runs`` (status filter applied) in index order, whether the index
    has none after them (``exhausted``), and the last index entry examined (``last``: created_at, run id)."""

    runs: list[RunRecord]
    exhausted: bool
    last: tuple[str, str] | None


def _fetch_runs(keys: list[Item]) -> list[RunRecord]:
    """The run items the index entries ``keys`` name, in the same order (BatchGetItem: the index projects
    keys only). A run removed since the index was read (a discarded queued run) is left out."""
    table = settings.get_settings().runs_table
    found = get_all(settings.dynamodb(), table, [(key["pk"]["S"], key["sk"]["S"]) for key in keys])
    items = (found.get((key["pk"]["S"], key["sk"]["S"])) for key in keys)
    return [decode_run(item) for item in items if item is not None]


def _with_results(runs: list[RunRecord]) -> None:
    """Fill in the results kept in their own items (one BatchGetItem for all of ``runs``)."""
    apart = [run for run in runs if run.result_apart and run.result_json is None]
    if not apart:
        return
    table = settings.get_settings().runs_table
    found = get_all(settings.dynamodb(), table, [(run_pk(run.run_id), RESULT_SK) for run in apart])
    for run in apart:
        item = found.get((run_pk(run.run_id), RESULT_SK))
        run.result_json = None if item is None else item["result"]["S"]


def _query_workflow(workflow_id: str, status: RunStatus | None, position: _Position, want: int) -> _Scanned:
    """Up to about ``want`` runs of one workflow after ``position``, newest first (with ``status`` only).

    The index holds keys only: each page of index entries is fetched (BatchGetItem) and filtered here; pages
    are read until ``want`` runs matched or the index is exhausted.
    """
    kwargs: dict[str, Any] = {
        "TableName": settings.get_settings().runs_table,
        "IndexName": BY_WORKFLOW_INDEX,
        "KeyConditionExpression": "wf = :wf",
        "ExpressionAttributeValues": {":wf": {"S": workflow_id}},
        "ScanIndexForward": False,
        "Limit": want,
    }
    if position.after is not None:
        created_at, run_id = position.after
        kwargs["ExclusiveStartKey"] = {
            "wf": {"S": workflow_id},
            "created_at": {"S": created_at},
            "pk": {"S": run_pk(run_id)},
            "sk": {"S": RUN_SK},
        }
    found: list[RunRecord] = []
    last: tuple[str, str] | None = None
    while True:
        page = settings.dynamodb().query(**kwargs)
        keys = page.get("Items", [])
        if keys:
            tail = keys[-1]
            last = (tail["created_at"]["S"], tail["pk"]["S"].removeprefix("run#"))
        found.extend(run for run in _fetch_runs(keys) if status is None or run.status == status)
        if "LastEvaluatedKey" not in page:
            return _Scanned(found, True, last)
        if len(found) >= want:
            return _Scanned(found, False, last)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def list_runs(workflow_ids: list[str], status: RunStatus | None, limit: int, cursor: str | None) -> RunPage:
    """One page of the runs of ``workflow_ids``, newest first (``InvalidCursorError`` on a bad cursor)."""
    positions = _decode_cursor(cursor) if cursor else {}
    fetched: dict[str, _Scanned] = {}
    for wf in workflow_ids:
        position = positions.setdefault(wf, _Position())
        fetched[wf] = (
            _Scanned([], True, None) if position.done else _query_workflow(wf, status, position, limit)
        )
    streams = [[(run, wf) for run in scanned.runs] for wf, scanned in fetched.items()]
    merged = list(heapq.merge(*streams, key=lambda entry: entry[0].created_at, reverse=True))[:limit]
    _with_results([run for run, _ in merged])
    page: list[tuple[RunRecord, str]] = []
    views: list[dict[str, Any]] = []
    budget = RESPONSE_BUDGET_BYTES
    for run, wf in merged:
        view = run_view(run, _members(run))
        cost = wire_size(view) + 1
        if page and cost > budget:  # the page stops at the byte budget; the cursor continues it
            break
        budget -= cost
        page.append((run, wf))
        views.append(view)
    taken: dict[str, int] = {}
    for run, wf in page:
        taken[wf] = taken.get(wf, 0) + 1
        positions[wf] = _Position(after=(run.created_at, run.run_id))
    more = False
    for wf, scanned in fetched.items():
        if taken.get(wf, 0) < len(scanned.runs):
            more = True  # continues after its last run shown (or where it started)
        elif scanned.exhausted:
            positions[wf] = _Position(done=True)
        else:
            more = True
            if scanned.last is not None:  # every entry read was shown or filtered out: continue after them
                positions[wf] = _Position(after=scanned.last)
    return RunPage(views, _encode_cursor({wf: positions[wf] for wf in workflow_ids}) if more else None)


# --- invoked runs ------------------------------------------------------------------------------------


def create_invoked(
    workflow_id: str,
    payload_json: str,
    idempotency_key: str | None,
    *,
    run_id: str | None = None,
    parent: ParentRef | None = None,
) -> tuple[RunRecord, bool]:
    """Store a ``queued`` run; returns it and ``True``, or the run the key (or ``run_id``: a child run's)
    created before and ``False``."""
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
    )
    stored = Journal().create_queued(run)
    return stored, stored is run


def enqueue(run: RunRecord) -> None:
    """Send the run's ``invoke`` message to its workflow's queue."""
    deliver([WorkflowMessage(workflow_id=run.workflow_id, kind="invoke", run_id=run.run_id)])


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

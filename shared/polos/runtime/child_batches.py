"""Fan-out: ``ctx.step.batch_invoke`` / ``batch_invoke_and_wait`` start up to 1,000 child runs once, and
the children's ends are counted so that the waiting parent resumes once, after the last one.

Starting: each child has an id derived from the parent run, the step and its position, and is stored with
a conditional PutItem (16 at once), so a replayed parent finds the children it started instead of starting
them again; the queued ones' messages go out 10 per SendMessageBatch. No transaction (DynamoDB's limit is
100 actions; none is needed: each child stands alone).

Counting: a child's end marks itself in one of the step's *end shards* (items of at most
:data:`SHARD_SIZE` children, each under its own partition key, so 1,000 children ending at once spread
their writes over 16 keys instead of one hot item): one UpdateItem adds the child's position to the
shard's number set unless it is there already (a duplicate or retried report changes nothing: marks, not a
counter, so counting is idempotent). The report that fills its shard (or finds its mark already there: its
first try may have died after it) reads every shard (one consistent BatchGetItem); when all are full, every
child has ended, and it reads the children's outcomes (BatchGetItem, 100 a call) and completes the parent's
waiting step with them (conditional: exactly one completer wins, the parent wakes once for it). Two reports
filling the last two shards at once: the later write's read sees both full, so the step never stays
waiting. Per child that is one write unit; the last one pays ``n / 100`` reads more.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import get_all
from polos.publish import waiters
from polos.runtime import runs
from polos.runtime.journal import RUN_SK, Journal, decode_run, hashed_run_id, run_pk
from polos.runtime.records import ErrorInfo, ParentRef, RunRecord
from polos.runtime.waits import MAX_WAIT_SECONDS

MAX_CHILDREN = 1000
SHARD_SIZE = 64
# Children started (or cancelled) at once: each is one small request, so threads keep 1,000 within seconds.
_PARALLEL = 16
_SHARD_SK = "ended"
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Child:
    """One child to start: its workflow and its payload as JSON."""

    workflow_id: str
    payload_json: str


def child_run_id(parent_run_id: str, step: str, index: int) -> str:
    """The id of child ``index`` of the parent's batch step (the same on every replay)."""
    return hashed_run_id(parent_run_id, "batch", step, str(index))


def child_ids(parent_run_id: str, step: str, count: int) -> list[str]:
    return [child_run_id(parent_run_id, step, index) for index in range(count)]


def each(items: list[_T], fn: Callable[[_T], _R]) -> list[_R]:
    """``fn`` of every item, :data:`_PARALLEL` at a time, in order."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(items))) as pool:
        return list(pool.map(fn, items))


def start(
    parent_run_id: str, parent_workflow_id: str, step: str, children: list[Child], wait: bool
) -> list[RunRecord]:
    """Store the children (those stored before are returned as they are now) and send the messages of
    those still ``queued`` (again on a replay: a duplicate invoke message is turned away). With ``wait``,
    each child reports its end to the parent's step."""

    def create(index: int) -> RunRecord:
        child = children[index]
        parent = ParentRef(parent_run_id, parent_workflow_id, step, index, len(children)) if wait else None
        run_id = child_run_id(parent_run_id, step, index)
        stored, _ = runs.create_invoked(
            child.workflow_id, child.payload_json, None, run_id=run_id, parent=parent
        )
        return stored

    stored = each(list(range(len(children))), create)
    runs.enqueue_many([run for run in stored if run.status == "queued"])
    return stored


# --- counting the children's ends --------------------------------------------------------------------


def _shard_count(of: int) -> int:
    return math.ceil(of / SHARD_SIZE)


def _shard_size(shard: int, of: int) -> int:
    return min(SHARD_SIZE, of - shard * SHARD_SIZE)


def _shard_key(parent_run_id: str, step: str, shard: int) -> tuple[str, str]:
    digest = hashlib.sha256(step.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"ended#{parent_run_id}#{digest}#{shard}", _SHARD_SK


def record_end(parent: ParentRef) -> bool:
    """Mark child ``parent.index`` ended; ``True`` when every child of the step has ended (then the
    caller completes the step). One UpdateItem, and a BatchGetItem when this end may be the last."""
    if parent.index is None or parent.of is None:
        raise ValueError(f"run {parent.run_id}'s step {parent.step!r} has no batch position to mark")
    shard = parent.index // SHARD_SIZE
    pk, sk = _shard_key(parent.run_id, parent.step, shard)
    # The marks live as long as the parent may wait for its children (a child may wait up to 365 days).
    expires = Journal().expires_at() + MAX_WAIT_SECONDS
    try:
        answer = settings.dynamodb().update_item(
            TableName=settings.get_settings().runs_table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            UpdateExpression="ADD ended :mark SET expires_at = if_not_exists(expires_at, :expires)",
            ConditionExpression="attribute_not_exists(ended) OR NOT contains(ended, :index)",
            ExpressionAttributeValues={
                ":mark": {"NS": [str(parent.index)]},
                ":index": {"N": str(parent.index)},
                ":expires": {"N": str(expires)},
            },
            ReturnValues="UPDATED_NEW",
        )
        if len(answer["Attributes"]["ended"]["NS"]) < _shard_size(shard, parent.of):
            return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        # Marked before: that report may have died before completing the step; look at every shard.
    return all_ended(parent.run_id, parent.step, parent.of)


def all_ended(parent_run_id: str, step: str, of: int) -> bool:
    """Whether every child of the step has marked its end (one consistent BatchGetItem)."""
    keys = [_shard_key(parent_run_id, step, shard) for shard in range(_shard_count(of))]
    found = get_all(settings.dynamodb(), settings.get_settings().runs_table, keys, consistent=True)
    return all(
        len(found.get(key, {}).get("ended", {}).get("NS", [])) >= _shard_size(shard, of)
        for shard, key in enumerate(keys)
    )


def outcomes(parent_run_id: str, step: str, of: int) -> list[dict[str, Any]]:
    """Every child's outcome as a ``BatchStepResult`` dict, in input order (BatchGetItem, 100 a call)."""
    ids = child_ids(parent_run_id, step, of)
    table = settings.get_settings().runs_table
    found = get_all(settings.dynamodb(), table, [(run_pk(run_id), RUN_SK) for run_id in ids], consistent=True)
    children = {
        run_id: decode_run(item) for (pk, _), item in found.items() if (run_id := pk.removeprefix("run#"))
    }
    runs.with_results(list(children.values()))
    return [_outcome(run_id, children.get(run_id)) for run_id in ids]


def _outcome(run_id: str, run: RunRecord | None) -> dict[str, Any]:
    if run is None or not run.finished:
        return {
            "workflow_id": run.workflow_id if run else "",
            "success": False,
            "result": None,
            "error": f"child run {run_id} has no outcome",
        }
    if run.status == "completed":
        result = json.loads(run.result_json) if run.result_json is not None else None
        return {"workflow_id": run.workflow_id, "success": True, "result": result, "error": None}
    error = (
        f"child run {run_id} was cancelled"
        if run.status == "cancelled"
        else f"{run.error.type}: {run.error.message}"
        if run.error
        else f"child run {run_id} failed"
    )
    return {"workflow_id": run.workflow_id, "success": False, "result": None, "error": error}


def complete(parent: ParentRef) -> bool:
    """Complete the parent's waiting step with every child's outcome (``True`` when this call did). An
    answer too large for the step's item fails the step with an error saying so."""
    if parent.of is None:
        raise ValueError(f"run {parent.run_id}'s step {parent.step!r} is not a batch of children")
    text = json.dumps(
        outcomes(parent.run_id, parent.step, parent.of), ensure_ascii=False, separators=(",", ":")
    )
    try:
        return waiters.complete_step(parent.run_id, parent.step, result_json=text)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        error = ErrorInfo(
            "BatchResultTooLargeError",
            f"the {parent.of} children's results ({len(text.encode())} bytes) do not fit one step of run "
            f"{parent.run_id}; return smaller results (an id to read them by) from the children",
        )
        return waiters.complete_step(parent.run_id, parent.step, error_json=error.to_json())

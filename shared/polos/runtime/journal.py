"""The run journal in DynamoDB: runs, their steps, and the lease that keeps attempts apart.

Layout (runs table, keys ``pk``/``sk``): a run lives in partition ``run#<run_id>``; its run item has sort
key ``run`` and each step ``step#<key>``, so loading a run's whole journal is ONE Query. Journaling a step
is ONE PutItem (a fenced TransactWriteItems when the attempt's lease is at risk), taking and finishing an
attempt one UpdateItem each. Run items (not steps) carry ``wf`` (the workflow's index partition,
:func:`index_partition`) and ``created_at``, the keys of the sparse ``by_workflow`` index the runs API lists
from; a single-event run (trigger ``event``) carries its workflow id in ``wid`` instead, outside the index:
its topic's events list it (``polos.runtime.event_runs``).

The lease: an attempt executes only while it holds ``lease_owner``/``lease_until`` on the run item, taken
with a conditional write that no other live attempt can win. A Lambda invocation cannot outlive its
timeout and the lease lasts that long, so an attempt that still runs can never overlap the next holder;
the executor also stops before any step once its own lease is about to lapse. Writes are fenced by the
lease owner: ``finish`` is conditional on it, and a step write made once the lease is about to lapse (a
slow step, a local run whose lease is shorter than the attempt) checks it in the same transaction, so a
zombie attempt's write is refused and it stops.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import get_all, query_all
from polos.aws.item_size import attribute_size, item_size
from polos.errors import RunLeaseLostError
from polos.payloads import utc_iso
from polos.publish.events import EventRef
from polos.runtime.attempts import DURATION_ATTRIBUTE, AttemptSummary, first_execution, traceback_sort_key
from polos.runtime.records import (
    FINISHED,
    RUN_ITEM_BUDGET,
    ErrorInfo,
    LoadedRun,
    ParentRef,
    RunRecord,
    RunStatus,
    StepRecord,
)
from polos.timestamps import parse_utc_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        ConditionCheckTypeDef,
        PutTypeDef,
        UpdateTypeDef,
    )

Item = dict[str, "AttributeValueTypeDef"]
RUN_SK = "run"
RESULT_SK = "result"
STEP_PREFIX = "step#"
MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit on a sort key, in UTF-8 bytes
# A step result over RESULT_APART_BYTES is journaled in its own item ``value#<key>#<random>`` (written
# before its step item, which names it in ``result_at``), so a run's steps are read without their large
# results, and the runs API reads only the results its answer holds. One more write unit per such step
# (its step item), at most 1/17 of what the result costs. Every other item of a run sorts before ``value#``.
VALUE_PREFIX = "value#"
RESULT_APART_BYTES = 16 * 1024
BY_WORKFLOW_INDEX = "by_workflow"
# A batch run's claim of an event stands in the place of the run item of the event's single-event run
# (see ``polos.runtime.batches``): an item with this attribute (the batch run's id) is a claim, not a run.
CLAIMED_BY = "run_id"


def run_pk(run_id: str) -> str:
    return f"run#{run_id}"


# The ``by_workflow`` index partitions one workflow's runs over this many keys (``wf`` = ``<workflow>#<n>``,
# n from the run id): a partition key of an index takes at most 1,000 writes a second, one per new run, so
# one key per workflow would cap it at 1,000 new runs a second. 16 keys: at 8,000 new runs a second each
# takes 500 +- 22 (crc32 spreads run ids evenly), half of its limit. Runs made before (``wf`` = the
# workflow id) keep their entry; listings read those too.
INDEX_SHARDS = 16


def index_partition(workflow_id: str, run_id: str) -> str:
    """The ``by_workflow`` index partition of a run: the same for every write of that run."""
    return f"{workflow_id}#{zlib.crc32(run_id.encode()) % INDEX_SHARDS}"


def index_partitions(workflow_id: str) -> list[str]:
    """Every ``by_workflow`` partition a workflow's runs may be in: its shards, and the workflow id itself
    (runs made before shards)."""
    return [workflow_id, *(f"{workflow_id}#{shard}" for shard in range(INDEX_SHARDS))]


# The attribute naming a run item's workflow: the index key ``wf``, or ``wid`` (not a key of any index) for
# a single-event run, which its event lists (one index write less per event). ``wid`` also tells its
# ``trigger_type`` (``event``), not stored then (17 bytes less; items written before have it).
UNINDEXED_WORKFLOW = "wid"


def workflow_attribute(trigger_type: str, workflow_id: str, run_id: str) -> tuple[str, str]:
    """The attribute (and its value) a new run item names its workflow with (see ``UNINDEXED_WORKFLOW``)."""
    if trigger_type == "event":
        return UNINDEXED_WORKFLOW, workflow_id
    return "wf", index_partition(workflow_id, run_id)


def hashed_run_id(*parts: str) -> str:
    return "run_" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:26]


def event_run_id(workflow_id: str, topic: str, sequence_id: int) -> str:
    """The run of ``workflow_id`` for one event: every delivery of the event maps to it."""
    return hashed_run_id(workflow_id, topic, str(sequence_id))


def scheduled_run_id(workflow_id: str, scheduled_time: str, schedule_id: str | None = None) -> str:
    """The run of one firing of a workflow's schedule (of its schedule ``schedule_id``, made at run time):
    a firing delivered twice maps to it."""
    fired = parse_utc_iso(scheduled_time)
    if schedule_id is None:
        return hashed_run_id(workflow_id, "schedule", utc_iso(fired))
    return hashed_run_id(workflow_id, "schedule", schedule_id, utc_iso(fired))


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


def _s(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def _n(item: Item, name: str) -> float | None:
    value = item.get(name)
    return None if value is None else float(value["N"])


def encode_run(run: RunRecord, expires_at: int) -> Item:
    """The run item for ``run`` (used by the journal and by batch creation)."""
    item: Item = {
        "pk": {"S": run_pk(run.run_id)},
        "sk": {"S": RUN_SK},
        "status": {"S": run.status},
        "attempts": {"N": str(run.attempts)},
        "created_at": {"S": run.created_at},
        "updated_at": {"S": run.updated_at},
        "expires_at": {"N": str(expires_at)},
    }
    name, workflow = workflow_attribute(run.trigger_type, run.workflow_id, run.run_id)
    item[name] = {"S": workflow}
    if name != UNINDEXED_WORKFLOW:
        item["trigger_type"] = {"S": run.trigger_type}
    if run.event_refs:
        item["event_refs"] = {"S": json.dumps([ref.to_list() for ref in run.event_refs])}
    optional = {
        "payload": run.payload_json,
        "result": run.result_json,
        "error": run.error.to_json() if run.error else None,
        "lease_owner": run.lease_owner,
        "waiting_for": run.waiting_for_json,
        "parent": run.parent.to_json() if run.parent else None,
        "initial_state": run.initial_state_json,
        "state": run.state_json,
        "rerun_of": run.rerun_of,
        "from_step": run.from_step,
        "rerun_op": run.rerun_op,
        "queue": run.queue_json,
    }
    for name, value in optional.items():
        if value is not None:
            item[name] = {"S": value}
    if run.lease_until is not None:
        item["lease_until"] = {"N": repr(run.lease_until)}
    if run.result_apart:
        item["result_apart"] = {"BOOL": True}
    if run.message_attempts:
        item["message_attempts"] = {"N": str(run.message_attempts)}
    if run.run_timeout_seconds is not None:
        item["run_timeout_seconds"] = {"N": str(run.run_timeout_seconds)}
    return item


def is_claim(item: Item) -> bool:
    """Whether a run item's place holds a batch run's claim of the event instead (no run of its own)."""
    return CLAIMED_BY in item


def decode_run(item: Item) -> RunRecord:
    pk = _s(item, "pk") or ""
    refs = _s(item, "event_refs")
    attempts = _n(item, "attempts")
    return RunRecord(
        run_id=pk.removeprefix("run#"),
        workflow_id=_s(item, UNINDEXED_WORKFLOW) or (_s(item, "wf") or "").split("#")[0],
        status=_s(item, "status"),  # type: ignore[arg-type]
        attempts=int(attempts or 0),
        trigger_type=_s(item, "trigger_type") or ("event" if UNINDEXED_WORKFLOW in item else None),  # type: ignore[arg-type]
        created_at=_s(item, "created_at") or "",
        updated_at=_s(item, "updated_at") or "",
        event_refs=[EventRef.from_list(raw) for raw in json.loads(refs)] if refs else [],
        payload_json=_s(item, "payload"),
        result_json=_s(item, "result"),
        error=ErrorInfo.from_json(_s(item, "error")),
        lease_owner=_s(item, "lease_owner"),
        lease_until=_n(item, "lease_until"),
        result_apart=bool(item.get("result_apart", {}).get("BOOL", False)),
        waiting_for_json=_s(item, "waiting_for"),
        cancel_requested=bool(item.get("cancel_requested", {}).get("BOOL", False)),
        parent=ParentRef.from_json(_s(item, "parent")),
        kept_steps_bytes=sum(
            attribute_size(name, value) for name, value in item.items() if name.startswith(STEP_PREFIX)
        ),
        item_bytes=item_size(item),
        message_attempts=int(_n(item, "message_attempts") or 0),
        dead_letter=bool(item.get("dead_letter", {}).get("BOOL", False)),
        kept_until=_n(item, "kept_until"),
        run_timeout_seconds=None if (timeout := _n(item, "run_timeout_seconds")) is None else int(timeout),
        initial_state_json=_s(item, "initial_state"),
        state_json=_s(item, "state"),
        rerun_of=_s(item, "rerun_of"),
        from_step=_s(item, "from_step"),
        rerun_op=_s(item, "rerun_op"),
        queue_json=_s(item, "queue"),
        slot_json=_s(item, "slot"),
    )


# A step kept in its run item leaves out the fields equal to these (kept steps are completed, most with one
# call): 27 bytes less per run. Maps written before have them.
KEPT_STEP_DEFAULTS: Item = {"status": {"S": "completed"}, "attempts": {"N": "1"}}
# A kept step's times, compact: ``at`` (when it started, epoch microseconds) and ``took`` (microseconds to
# its end) in place of the step item's two ISO texts, 57 bytes less a step; ``idx`` 0 is left out. Maps
# written before have ``started_at``/``finished_at`` (and are read as they are).
KEPT_STARTED, KEPT_TOOK = "at", "took"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(stamp: str) -> int | None:
    try:
        return (parse_utc_iso(stamp) - _EPOCH) // timedelta(microseconds=1)
    except ValueError:
        return None


def _kept_steps(run_item: Item) -> list[StepRecord]:
    """The steps journaled in a run item (see ``Journal.keep_step`` and ``Journal.finish``)."""
    return [
        _decode_kept(name, value["M"])  # type: ignore[arg-type]
        for name, value in run_item.items()
        if name.startswith(STEP_PREFIX) and "M" in value
    ]


def _decode_kept(name: str, fields: Item) -> StepRecord:
    step = _decode_step({**KEPT_STEP_DEFAULTS, **fields, "sk": {"S": name}})
    started = _n(fields, KEPT_STARTED)
    if started is not None:
        started_us = int(started)
        step.started_at = utc_iso(_EPOCH + timedelta(microseconds=started_us))
        took_us = int(_n(fields, KEPT_TOOK) or 0)
        step.finished_at = utc_iso(_EPOCH + timedelta(microseconds=started_us + took_us))
    return step


def _utf8_len(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


def _result_apart(step: StepRecord) -> bool:
    return _utf8_len(step.result_json) > RESULT_APART_BYTES


def _encode_step(run_id: str, step: StepRecord, expires_at: int, result_at: str | None = None) -> Item:
    item: Item = {
        "pk": {"S": run_pk(run_id)},
        "sk": {"S": STEP_PREFIX + step.key},
        "idx": {"N": str(step.index)},
        "status": {"S": step.status},
        "attempts": {"N": str(step.attempts)},
        "started_at": {"S": step.started_at},
        "finished_at": {"S": step.finished_at},
        "expires_at": {"N": str(expires_at)},
    }
    if result_at is not None:
        item["result_at"] = {"S": result_at}
        item["result_bytes"] = {"N": str(_utf8_len(step.result_json))}
    elif step.result_json is not None:
        item["result"] = {"S": step.result_json}
    if step.result_tag is not None:
        item["result_tag"] = {"S": step.result_tag}
    if step.error is not None:
        item["error"] = {"S": step.error.to_json()}
    if step.wait_json is not None:
        item["wait"] = {"S": step.wait_json}
    return item


def _step_attribute(step: StepRecord) -> AttributeValueTypeDef:
    """A step kept in its run item (attribute ``step#<key>``): the step item's fields but those equal to
    :data:`KEPT_STEP_DEFAULTS`, its times compact (:data:`KEPT_STARTED`), as a map."""
    fields = _encode_step("", step, 0)
    for name in ("pk", "sk", "expires_at"):
        del fields[name]
    for name, default in KEPT_STEP_DEFAULTS.items():
        if fields[name] == default:
            del fields[name]
    if step.index == 0:
        del fields["idx"]
    started, finished = _epoch_us(step.started_at), _epoch_us(step.finished_at)
    if started is not None and finished is not None and finished >= started:
        del fields["started_at"], fields["finished_at"]
        fields[KEPT_STARTED] = {"N": str(started)}
        fields[KEPT_TOOK] = {"N": str(finished - started)}
    return {"M": fields}


def kept_step_bytes(step: StepRecord) -> int:
    """The bytes ``step`` adds to its run item when kept there (DynamoDB's rules)."""
    return attribute_size(STEP_PREFIX + step.key, _step_attribute(step))


def _decode_step(item: Item) -> StepRecord:
    return StepRecord(
        key=(_s(item, "sk") or "").removeprefix(STEP_PREFIX),
        index=int(_n(item, "idx") or 0),
        status=_s(item, "status"),  # type: ignore[arg-type]
        attempts=int(_n(item, "attempts") or 0),
        started_at=_s(item, "started_at") or "",
        finished_at=_s(item, "finished_at") or "",
        result_json=_s(item, "result"),
        result_tag=_s(item, "result_tag"),
        error=ErrorInfo.from_json(_s(item, "error")),
        wait_json=_s(item, "wait"),
        completed_by=_s(item, "completed_by"),
        result_at=_s(item, "result_at"),
        result_bytes=int(_n(item, "result_bytes") or 0),
    )


def _written_by(stored: Item | None, step: StepRecord) -> bool:
    """Whether the completed step item ``stored`` is ``step`` itself, journaled already by this attempt (a
    write applied whose answer was lost, or the last step journaled before an outcome that failed)."""
    if stored is None:
        return False
    was, apart = _decode_step(stored), _result_apart(step)
    written = (step.result_json, 0) if not apart else (None, _utf8_len(step.result_json))
    return (was.status, was.started_at, was.finished_at, was.attempts, was.result_json, was.result_bytes) == (
        step.status,
        step.started_at,
        step.finished_at,
        step.attempts,
        *written,
    )


def _cancel_asked(run_item: Item) -> bool:
    return bool(run_item.get("cancel_requested", {}).get("BOOL", False))


# A run an attempt may take (or that may be failed for exhausted deliveries): unfinished, and no live lease.
_LEASE_FREE = (
    "((#status = :queued OR #status = :running) AND "
    "(attribute_not_exists(lease_until) OR lease_until < :now))"
)


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _finished_by(
    stored: Item | None, status: str, stamp: str, waiting_for_json: str | None, attempts: int | None
) -> bool:
    """Whether the run item ``stored``, returned by a refused ``finish``, holds that very finish: applied by
    an earlier send whose answer was lost (botocore sent it again). Its lease is released, and it shows our
    status, ``updated_at`` stamp (to the microsecond) and ``waiting_for``. With ``attempts`` (the count our
    write left), it holds whatever the clocks: a later attempt's acquire adds one, so its outcome shows our
    count only when it gave that one back (ran nothing, ``queued`` for a slot), and then it waits for the
    slot, which an outcome of ours that counts its execution never does."""
    if stored is None or "lease_owner" in stored:
        return False
    written = (_s(stored, "status"), _s(stored, "updated_at"), _s(stored, "waiting_for"))
    counted = attempts is None or _n(stored, "attempts") == attempts
    return counted and written == (status, stamp, waiting_for_json)


@dataclass(frozen=True, slots=True)
class Acquired:
    """This attempt holds the lease; ``run.attempts`` counts it."""

    run: RunRecord
    outcome: Literal["acquired"] = "acquired"


@dataclass(frozen=True, slots=True)
class NotAcquired:
    """The run is finished, another live attempt holds its lease, it waits (and the caller does not wake
    it), (``create=False``) it does not exist, a batch run claimed its event (``claimed_by``), or its
    message's executions are spent (``max_attempts``; the earlier ones died without an outcome)."""

    run: RunRecord | None
    outcome: Literal["finished", "busy", "missing", "waiting", "claimed", "spent"]
    claimed_by: str | None = None


class Journal:
    """Reads and writes runs and steps. One instance per process is enough; it holds no run state."""

    def __init__(self, client: DynamoDBClient | None = None, table: str | None = None) -> None:
        self._client = client or settings.dynamodb()
        self._table = table or settings.get_settings().runs_table

    @property
    def table(self) -> str:
        return self._table

    def expires_at(self) -> int:
        return int(time.time()) + settings.get_settings().retention_seconds

    def query_partition(self, run_id: str) -> list[Item]:
        """Every item of a run's partition (one strongly consistent Query, more only past 1 MB)."""
        return query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}},
            ConsistentRead=True,
        )

    def load_step(self, run_id: str, key: str) -> LoadedRun | None:
        """The run with only its step ``key`` (none when it has no such step), or ``None`` when no run item
        exists: its run item and step item in one strongly consistent BatchGetItem, not its partition."""
        wanted = [(run_pk(run_id), RUN_SK), (run_pk(run_id), STEP_PREFIX + key)]
        items = list(get_all(self._client, self._table, wanted, consistent=True).values())
        loaded = self.decode_partition(items)
        if loaded is not None:
            loaded.steps = [step for step in loaded.steps if step.key == key]
            self.load_results(run_id, loaded.steps)
        return loaded

    def query_run(self, run_id: str, *, steps: bool = True) -> list[Item]:
        """A run's items but its large step results (see :data:`VALUE_PREFIX`), or with ``steps=False``
        but its steps too (run item, result, batch members): one strongly consistent Query."""
        upper = "sk < :upper" if steps else "sk <= :upper"
        return query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression=f"pk = :pk AND {upper}",
            ExpressionAttributeValues={
                ":pk": {"S": run_pk(run_id)},
                ":upper": {"S": VALUE_PREFIX if steps else RUN_SK},
            },
            ConsistentRead=True,
        )

    def load(self, run_id: str) -> LoadedRun | None:
        """The run and its steps in first-call order, or ``None`` when no run item exists."""
        return self.decode_partition(self.query_partition(run_id))

    @staticmethod
    def decode_partition(items: list[Item]) -> LoadedRun | None:
        run_item = next((item for item in items if _s(item, "sk") == RUN_SK), None)
        if run_item is None or is_claim(run_item):
            return None
        found = {
            step.key: step
            for step in (
                _decode_step(item) for item in items if (_s(item, "sk") or "").startswith(STEP_PREFIX)
            )
        }
        # A run's last step may be journaled in its run item, written with the run's outcome (``finish``).
        for kept in _kept_steps(run_item):
            if kept.key not in found or found[kept.key].status != "completed":
                found[kept.key] = kept
        steps = sorted(found.values(), key=lambda step: step.index)
        values = {_s(item, "sk"): item for item in items if (_s(item, "sk") or "").startswith(VALUE_PREFIX)}
        for step in steps:
            if step.result_at is not None and step.result_at in values:
                step.result_json = _s(values[step.result_at], "result")
        run = decode_run(run_item)
        if run.result_apart:
            result_item = next((item for item in items if _s(item, "sk") == RESULT_SK), None)
            run.result_json = None if result_item is None else _s(result_item, "result")
        return LoadedRun(run=run, steps=steps)

    def load_result(self, run: RunRecord) -> RunRecord:
        """``run`` with its result filled in when it is kept in its own item (one GetItem then)."""
        if run.result_apart and run.result_json is None:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run.run_id)}, "sk": {"S": RESULT_SK}},
                ConsistentRead=True,
            )
            run.result_json = _s(answer.get("Item", {}), "result")
        return run

    def create_queued(self, run: RunRecord) -> RunRecord:
        """Store a new ``queued`` run (direct invocation); returns the existing one if the id is taken."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=encode_run(run, self.expires_at()),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return decode_run(exc.response["Item"])  # type: ignore[typeddict-item]
        return run

    def acquire(
        self,
        *,
        run_id: str,
        workflow_id: str,
        trigger_type: str,
        event_refs: list[EventRef],
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        payload_json: str | None = None,
        create: bool = True,
        wake: bool = True,
        max_attempts: int | None = None,
        created_at: str | None = None,
    ) -> Acquired | NotAcquired:
        """Take the run's lease for one attempt, creating the run item on its first delivery (with
        ``payload_json`` when the run's input is not stored elsewhere: a scheduled run's).

        With ``create=False`` (invoked runs, stored by the API before their message is sent) a run that does
        not exist is not created: the answer is ``missing``. A ``waiting`` run is taken only with ``wake``
        (the executor asks so when its wait is over); else the answer is ``waiting``. The answer (``ALL_NEW``,
        or ``ALL_OLD`` when refused) tells the executor whether an earlier attempt may have journaled
        steps (``attempts``), so a first delivery needs no read. With ``max_attempts``, a run whose current
        message has had that many executions (``message_attempts``) is not taken: ``spent``. A new run's
        ``created_at`` is ``created_at`` when given (a single-event run's: its event's, where the runs API
        lists it), else now.
        """
        moment = time.time() if now is None else now
        stamp = now_iso()
        named, workflow = workflow_attribute(trigger_type, workflow_id, run_id)
        values: dict[str, AttributeValueTypeDef] = {
            ":wf": {"S": workflow},
            ":running": {"S": "running"},
            ":queued": {"S": "queued"},
            ":owner": {"S": owner},
            ":until": {"N": repr(moment + lease_seconds)},
            ":now": {"N": repr(moment)},
            ":stamp": {"S": stamp},
            ":created": {"S": created_at or stamp},
            ":expires": {"N": str(self.expires_at())},
            ":one": {"N": "1"},
        }
        taken_when = _LEASE_FREE
        if wake:
            values[":waiting"] = {"S": "waiting"}
            taken_when = f"({_LEASE_FREE} OR (#status = :waiting AND attribute_not_exists(lease_until)))"
        if max_attempts is not None:
            values[":max_attempts"] = {"N": str(max_attempts)}
            taken_when = (
                f"({taken_when} AND "
                "(attribute_not_exists(message_attempts) OR message_attempts < :max_attempts))"
            )
        set_refs = ""
        # A run created here names its trigger, unless ``wid`` tells it; an existing one has it already (a
        # wake-up's message, ``invoke``, is not the trigger of the run it wakes).
        if create and named != UNINDEXED_WORKFLOW:
            values[":trigger"] = {"S": trigger_type}
            set_refs = ", trigger_type = if_not_exists(trigger_type, :trigger)"
        if event_refs:
            values[":refs"] = {"S": json.dumps([ref.to_list() for ref in event_refs])}
            set_refs += ", event_refs = if_not_exists(event_refs, :refs)"
        if payload_json is not None:
            values[":payload"] = {"S": payload_json}
            set_refs += ", payload = if_not_exists(payload, :payload)"
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression=(
                    f"SET {named} = if_not_exists({named}, :wf), #status = :running, lease_owner = :owner, "
                    "lease_until = :until, "
                    "updated_at = :stamp, created_at = if_not_exists(created_at, :created), "
                    "expires_at = if_not_exists(expires_at, :expires)"
                    + set_refs
                    + " ADD attempts :one, message_attempts :one"
                ),
                ConditionExpression=("attribute_not_exists(pk) OR " if create else "") + taken_when,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            if old is None:
                return NotAcquired(run=None, outcome="missing")
            if _s(old, "lease_owner") == owner:  # a retry of our own take, applied but its answer lost
                return Acquired(run=decode_run(old))
            if is_claim(old):
                return NotAcquired(run=None, outcome="claimed", claimed_by=_s(old, CLAIMED_BY))
            current = decode_run(old)
            if current.finished:
                return NotAcquired(run=current, outcome="finished")
            lease_free = current.lease_until is None or current.lease_until < moment
            spent = max_attempts is not None and current.message_attempts >= max_attempts
            if spent and lease_free and current.status in ("queued", "running"):
                return NotAcquired(run=current, outcome="spent")
            waits = current.status == "waiting" and current.lease_until is None
            return NotAcquired(run=current, outcome="waiting" if waits else "busy")
        return Acquired(run=decode_run(answer["Attributes"]))

    def index_run(self, run_id: str, workflow_id: str) -> None:
        """Give a single-event run its ``by_workflow`` index entry (one UpdateItem; a run already in the
        index, or gone, is left as it is): a run kept past its event's retention, which a listing of its
        topic's events may no longer reach (``polos.runtime.event_runs``)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression="SET wf = :wf",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(wf)",
                ExpressionAttributeValues={":wf": {"S": index_partition(workflow_id, run_id)}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def rewait(self, run_id: str, waited: str, waiting_for_json: str, kept_until: int) -> bool:
        """A waiting run waits on, for ``waiting_for_json`` now, its items kept until ``kept_until`` (see
        ``polos.runtime.retention.renew``); ``False`` unless it still waited for ``waited`` (exactly), with
        no attempt holding it. One conditional UpdateItem."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression="SET waiting_for = :now, expires_at = :kept, kept_until = :kept",
                ConditionExpression=(
                    "#status = :waiting AND waiting_for = :was AND attribute_not_exists(lease_until)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":now": {"S": waiting_for_json},
                    ":was": {"S": waited},
                    ":kept": {"N": str(kept_until)},
                    ":waiting": {"S": "waiting"},
                },
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def fail_exhausted(
        self, run_id: str, error: ErrorInfo, now: float | None = None, *, dead_letter: bool = False
    ) -> RunRecord | None:
        """Fail a run whose deliveries ran out while it was neither finished nor held by a live attempt
        (with ``dead_letter``: marked so its message goes to the dead-letter queue).

        One conditional UpdateItem; returns the run as it now is (``None`` when there is no run). A run that
        is finished, or whose lease a live attempt holds, is returned unchanged.
        """
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression="SET #status = :failed, #error = :error, updated_at = :stamp, "
                "dead_letter = :dead_letter REMOVE lease_owner, lease_until",
                ConditionExpression="attribute_exists(pk) AND " + _LEASE_FREE,
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"},
                    ":error": {"S": error.to_json()},
                    ":stamp": {"S": now_iso()},
                    ":queued": {"S": "queued"},
                    ":running": {"S": "running"},
                    ":now": {"N": repr(time.time() if now is None else now)},
                    ":dead_letter": {"BOOL": dead_letter},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            item: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            return None if item is None or is_claim(item) else decode_run(item)
        return decode_run(answer["Attributes"])

    def reopen(self, run_id: str) -> bool:
        """Make a ``failed`` run ``queued`` again (its message is being redriven); ``False`` if not failed.

        One conditional UpdateItem; two when its first execution failed it and kept only its duration (see
        :mod:`polos.runtime.attempts`): refused, its ``ALL_OLD`` answer gives that execution's summary,
        written whole by the second, conditional on the run being as read."""
        reopened, old = self._reopen(run_id, None)
        if reopened or old is None or is_claim(old) or _s(old, "status") != "failed":
            return reopened
        first = first_execution(decode_run(old), old)
        return first is not None and self._reopen(run_id, first)[0]

    def _reopen(self, run_id: str, first: AttemptSummary | None) -> tuple[bool, Item | None]:
        """One reopening write: whether it was applied, else the item that refused it. With ``first``, it
        writes that summary whole in place of the duration it was rebuilt from."""
        names = {"#status": "status", "#error": "error"}
        values: dict[str, AttributeValueTypeDef] = {
            ":queued": {"S": "queued"},
            ":failed": {"S": "failed"},
            ":stamp": {"S": now_iso()},
        }
        removals = "#error, message_attempts, dead_letter"  # a redrive starts a fresh count
        condition = f"#status = :failed AND attribute_not_exists({DURATION_ATTRIBUTE})"
        summary = ""
        if first is not None:
            names["#attempt"] = first.attribute
            values[":attempt"] = {"S": first.to_json()}
            values[":took"] = {"N": str(first.duration_us)}
            summary, removals = ", #attempt = :attempt", f"{removals}, {DURATION_ATTRIBUTE}"
            condition = f"#status = :failed AND {DURATION_ATTRIBUTE} = :took"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression=f"SET #status = :queued, updated_at = :stamp{summary} REMOVE {removals}",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return False, exc.response.get("Item")  # type: ignore[return-value]
        return True, None

    def record_step(self, run_id: str, step: StepRecord, *, fence_owner: str | None = None) -> None:
        """Journal a step. A completed step is never overwritten.

        Plain: one PutItem (1 write unit per KB). Fenced (``fence_owner`` given): one TransactWriteItems
        that also checks the run item's ``lease_owner`` is still ``fence_owner``, so an attempt whose lease
        another attempt has taken writes nothing (``RunLeaseLostError``); it costs 2 write units per KB
        for the step and 2 for the check, so the step runner fences only writes made when the attempt's
        lease is at risk (see ``polos.runtime.steps``). A large result is first put in its own item (see
        :data:`VALUE_PREFIX`; one an attempt wrote but did not journal is left to expire).
        """
        expires = self.expires_at()
        result_at = None
        if _result_apart(step):
            result_at = f"{VALUE_PREFIX}{step.key}#{secrets.token_hex(6)}"
            value: Item = {
                "pk": {"S": run_pk(run_id)},
                "sk": {"S": result_at},
                "result": {"S": str(step.result_json)},
                "expires_at": {"N": str(expires)},
            }
            self._client.put_item(TableName=self._table, Item=value)
        put: PutTypeDef = {
            "TableName": self._table,
            "Item": _encode_step(run_id, step, expires, result_at),
            # a failed or waiting step is overwritten (retried, or its wait is over); a completed one never
            "ConditionExpression": "attribute_not_exists(pk) OR #status <> :completed",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":completed": {"S": "completed"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        journaled_elsewhere = f"step {step.key!r} of run {run_id} was journaled by another attempt"
        if fence_owner is None:
            try:
                self._client.put_item(**put)
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                if not _written_by(exc.response.get("Item"), step):  # type: ignore[arg-type]
                    raise RunLeaseLostError(journaled_elsewhere) from exc
            return
        check: ConditionCheckTypeDef = {
            "TableName": self._table,
            "Key": {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            "ConditionExpression": "lease_owner = :owner",
            "ExpressionAttributeValues": {":owner": {"S": fence_owner}},
        }
        try:
            self._client.transact_write_items(TransactItems=[{"ConditionCheck": check}, {"Put": put}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons", [])
            codes = [reason.get("Code") for reason in reasons]
            if codes[:1] == ["ConditionalCheckFailed"]:
                raise RunLeaseLostError(
                    f"run {run_id}: this attempt lost its lease; step {step.key!r} not journaled"
                ) from exc
            stored: Item | None = reasons[1].get("Item") if len(reasons) > 1 else None  # type: ignore[assignment]
            if codes[1:2] == ["ConditionalCheckFailed"] and _written_by(stored, step):
                return
            if codes[1:2] == ["ConditionalCheckFailed"]:
                raise RunLeaseLostError(journaled_elsewhere) from exc
            raise

    def keep_step(self, run_id: str, step: StepRecord, owner: str) -> bool:
        """Journal a completed step in its run item (attribute ``step#<key>``, see ``StepRunner``'s
        ``keeps``): one UpdateItem conditional on this attempt's lease, so it is fenced at no extra cost (a
        zombie attempt's write is refused: ``RunLeaseLostError``), and on the step not being kept already (a
        completed step is never overwritten). A send applied whose answer was lost is sent again by
        botocore and refused by that condition: the item it returns holds this very step, which then counts
        as done. Returns whether a cancel was asked for (the item's ``cancel_requested``, in the answer at no
        cost: ``ReturnValues`` is not billed), so a run of kept steps needs no read to notice one."""
        name, kept = STEP_PREFIX + step.key, _step_attribute(step)
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
                UpdateExpression="SET #step = :step",
                ConditionExpression="lease_owner = :owner AND attribute_not_exists(#step)",
                ExpressionAttributeNames={"#step": name},
                ExpressionAttributeValues={":step": kept, ":owner": {"S": owner}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            stored: Item = exc.response.get("Item", {})  # type: ignore[assignment]
            if _s(stored, "lease_owner") != owner:
                raise RunLeaseLostError(
                    f"run {run_id}: this attempt lost its lease; step {step.key!r} not journaled"
                ) from exc
            if stored.get(name) != kept:
                raise RunLeaseLostError(
                    f"step {step.key!r} of run {run_id} was journaled by another attempt"
                ) from exc
            return _cancel_asked(stored)
        return _cancel_asked(answer["Attributes"])

    def finish(
        self,
        run_id: str,
        owner: str,
        status: RunStatus,
        *,
        result_json: str | None = None,
        error: ErrorInfo | None = None,
        payload_bytes: int = 0,
        waiting_for_json: str | None = None,
        step: StepRecord | None = None,
        kept_steps_bytes: int = 0,
        dead_letter: bool = False,
        kept_until: int | None = None,
        uncounted: bool = False,
        state_json: str | None = None,
        attempt: AttemptSummary | None = None,
        slot_json: str | None = None,
        unexecuted: bool = False,
        attempts: int | None = None,
    ) -> bool:
        """End this attempt: ``completed``/``failed``/``cancelled`` for good, ``queued`` to retry, or
        ``waiting`` (with ``waiting_for_json``) until a wake-up. Returns whether a cancel was asked for
        meanwhile (the run item's ``cancel_requested``, read by the same request).

        One UpdateItem conditional on the lease owner. When the run item's payload (``payload_bytes``) and
        the result would pass ``RUN_ITEM_BUDGET``, the result goes to its own item, written in one
        transaction with the run item's update (so both or neither are written).

        ``step``: the attempt's last completed step, not journaled yet. It is kept in the run item
        (attribute ``step#<key>``, merged back by ``decode_partition``) by the same UpdateItem, so the step
        and the outcome are written together or not at all; when that would take the run item past
        ``RUN_ITEM_BUDGET`` with the steps kept there already (``kept_steps_bytes``, by earlier attempts),
        the result goes apart or the step's own result is large, the step is journaled in its own item first.

        ``kept_until``: everything else the run reads when it wakes was kept until then (see
        :mod:`polos.runtime.retention`); the run item is kept as long, and records it, in the same write.

        ``uncounted``: the attempt was stopped by AWS (a throttle, a timeout), not by the workflow: the
        execution the lease counted is given back (``max_attempts`` counts the workflow's failures only).

        ``state_json``: ``ctx.state`` as the attempt left it (``state_schema`` workflows), saved with the
        outcome.

        ``attempt``: this execution's summary, kept in the run item (see :mod:`polos.runtime.attempts`; only
        its duration when it is the first and ends the run); its ``finished_at`` is the run's ``updated_at``.

        ``slot_json``: the concurrency slot the attempt took or queued for (``polos.runtime.slots``).
        ``unexecuted``: the attempt ran nothing (queued for a slot): its ``attempts`` count is given back.

        A send applied whose answer was lost is sent again by botocore and refused by its own condition (the
        lease is released): the item it returns shows whether it is this write (``_finished_by``; pass the
        run's ``attempts`` as this attempt's lease counted them), which then counts as done.
        """
        stamp = now_iso()
        values: dict[str, AttributeValueTypeDef] = {
            ":status": {"S": status},
            ":stamp": {"S": stamp},
            ":owner": {"S": owner},
        }
        names = {"#status": "status", "#error": "error"}
        assignments = ["#status = :status", "updated_at = :stamp"]
        removals = ["lease_owner", "lease_until"]
        if status in FINISHED:
            removals.append("cancel_requested")
        if status in ("completed", "waiting", "cancelled"):
            removals.append("message_attempts")  # ended well: the next message starts a fresh count
        if dead_letter:
            values[":dead_letter"] = {"BOOL": True}
            assignments.append("dead_letter = :dead_letter")
        if kept_until is not None:
            values[":kept"] = {"N": str(kept_until)}
            assignments += ["expires_at = :kept", "kept_until = :kept"]
        if slot_json is not None:
            values[":slot"] = {"S": slot_json}
            assignments.append("slot = :slot")
        if waiting_for_json is not None:
            values[":waiting_for"] = {"S": waiting_for_json}
            assignments.append("waiting_for = :waiting_for")
        else:
            removals.append("waiting_for")
        apart = result_json is not None and payload_bytes + _utf8_len(result_json) > RUN_ITEM_BUDGET
        if result_json is not None and not apart:
            values[":result"] = {"S": result_json}
            names["#result"] = "result"
            assignments.append("#result = :result")
        if apart:
            values[":apart"] = {"BOOL": True}
            assignments.append("result_apart = :apart")
        if error is not None:
            values[":error"] = {"S": error.to_json()}
            assignments.append("#error = :error")
        else:
            removals.append("#error")
        if state_json is not None:
            values[":state"] = {"S": state_json}
            names["#state"] = "state"
            assignments.append("#state = :state")
        if step is not None:
            kept = payload_bytes + (0 if apart else _utf8_len(result_json)) + _utf8_len(waiting_for_json)
            kept += kept_steps_bytes
            if apart or _result_apart(step) or kept + kept_step_bytes(step) > RUN_ITEM_BUDGET:
                self.record_step(run_id, step, fence_owner=owner)
            else:
                names["#step"] = STEP_PREFIX + step.key
                values[":step"] = _step_attribute(step)
                assignments.append("#step = :step")
        if attempt is not None:
            attempt = replace(attempt, finished_at=stamp)  # the run's updated_at: first_execution reads it
            names["#attempt"] = attempt.attribute
            if attempt.ends_first:  # an earlier summary of number 1 (queued for a slot, given back) goes
                values[":took"] = {"N": str(attempt.duration_us)}
                assignments.append(f"{DURATION_ATTRIBUTE} = :took")
                removals.append("#attempt")
            else:
                values[":attempt"] = {"S": attempt.to_json()}
                assignments.append("#attempt = :attempt")
        given_back = ""
        if uncounted and "message_attempts" not in removals:
            values[":given_back"] = {"N": "-1"}
            given_back = " ADD message_attempts :given_back"
        if unexecuted:
            values[":given_back"] = {"N": "-1"}
            given_back += (", " if given_back else " ADD ") + "attempts :given_back"
        update: UpdateTypeDef = {
            "TableName": self._table,
            "Key": {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            "UpdateExpression": f"SET {', '.join(assignments)} REMOVE {', '.join(removals)}{given_back}",
            "ConditionExpression": "lease_owner = :owner",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        lost = f"run {run_id}: this attempt lost its lease before finishing"
        counted = None if attempts is None else attempts - (1 if unexecuted else 0)
        try:
            if not apart:
                answer = self._client.update_item(**update, ReturnValues="ALL_NEW")
                return _cancel_asked(answer.get("Attributes", {}))
            result_item: Item = {
                "pk": {"S": run_pk(run_id)},
                "sk": {"S": RESULT_SK},
                "result": {"S": str(result_json)},
                "expires_at": {"N": str(self.expires_at())},
            }
            self._client.transact_write_items(
                TransactItems=[{"Update": update}, {"Put": {"TableName": self._table, "Item": result_item}}]
            )
            return False  # only a completed run keeps its result apart: a cancel no longer matters
        except ClientError as exc:
            stored: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            reasons = exc.response.get("CancellationReasons", [])
            if not _condition_failed(exc):
                if [reason.get("Code") for reason in reasons][:1] != ["ConditionalCheckFailed"]:
                    raise
                stored = reasons[0].get("Item")  # type: ignore[assignment]
            if not _finished_by(stored, status, stamp, waiting_for_json, counted):
                raise RunLeaseLostError(lost) from exc
            return _cancel_asked(stored or {})

    def put_traceback(self, run_id: str, attempt: int, text: str) -> None:
        """Keep a failed execution's (bounded) traceback in the run's partition, as long as the run."""
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": run_pk(run_id)},
                "sk": {"S": traceback_sort_key(attempt)},
                "traceback": {"S": text},
                "expires_at": {"N": str(self.expires_at())},
            },
        )

    def cancel(self, run_id: str) -> tuple[RunRecord, bool] | None:
        """Cancel a run: ``queued``/``waiting`` become ``cancelled`` at once; a ``running`` one gets
        ``cancel_requested`` (its attempt ends it at its next step boundary). One conditional UpdateItem
        (a second one only when the run changed status in between). Returns the run and whether this call
        changed it (``False``: it was finished already); ``None`` when there is no such run. A cancelled
        run keeps its ``waiting_for``, so what follows the cancel can be done again after a crash."""
        key: Item = {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}}
        names = {"#status": "status"}
        for _ in range(3):  # the run may move between statuses while we ask; each try reads its state
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="SET #status = :cancelled, updated_at = :stamp",
                    ConditionExpression="#status IN (:queued, :waiting)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={
                        ":cancelled": {"S": "cancelled"},
                        ":queued": {"S": "queued"},
                        ":waiting": {"S": "waiting"},
                        ":stamp": {"S": now_iso()},
                    },
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                cancelled = decode_run(answer["Attributes"])
                cancelled.status = "cancelled"
                return cancelled, True
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                old: Item | None = exc.response.get("Item")  # type: ignore[assignment]
            if old is None or is_claim(old):
                return None
            current = decode_run(old)
            if current.status != "running":
                return current, False  # finished
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="SET cancel_requested = :yes",
                    ConditionExpression="#status = :running",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":yes": {"BOOL": True}, ":running": {"S": "running"}},
                    ReturnValues="ALL_NEW",
                )
                return decode_run(answer["Attributes"]), True
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
        raise RuntimeError(f"run {run_id} kept changing status while being cancelled; try again")

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel was asked for while this attempt runs (one strongly consistent GetItem)."""
        answer = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            ProjectionExpression="cancel_requested",
            ConsistentRead=True,
        )
        return bool(answer.get("Item", {}).get("cancel_requested", {}).get("BOOL", False))

    def dead_letter_marked(self, run_id: str) -> bool:
        """Whether the run failed for want of attempts (its message belongs in the dead-letter queue); one
        strongly consistent GetItem."""
        answer = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}},
            ProjectionExpression="dead_letter",
            ConsistentRead=True,
        )
        return bool(answer.get("Item", {}).get("dead_letter", {}).get("BOOL", False))

    def get_step(self, run_id: str, key: str) -> StepRecord | None:
        """One journaled step (one strongly consistent GetItem)."""
        answer = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": run_pk(run_id)}, "sk": {"S": STEP_PREFIX + key}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None:
            return None
        step = _decode_step(item)
        self.load_results(run_id, [step])
        return step

    def load_results(self, run_id: str, steps: list[StepRecord]) -> None:
        """Fill in the large results of ``steps`` not read yet (kept in their own items; one strongly
        consistent BatchGetItem per 100 of them)."""
        wanted = [step for step in steps if step.result_at is not None and step.result_json is None]
        if not wanted:
            return
        keys = [(run_pk(run_id), str(step.result_at)) for step in wanted]
        found = get_all(self._client, self._table, keys, consistent=True)
        for step, key in zip(wanted, keys, strict=True):
            step.result_json = _s(found[key], "result") if key in found else None

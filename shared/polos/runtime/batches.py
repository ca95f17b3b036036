"""Batch membership: each event belongs to exactly one batch run of each batch workflow.

A new batch run is created together with its membership in ONE ``TransactWriteItems`` per chunk of events: the
run item (already leased to the creating attempt, in the first chunk only), a *member chunk* item in the run's
partition (``sk=member#<nnnn>``, the chunk's ``EventRef`` list) and one conditional *claim* per event in the
partition of the event's single-event run, in the place of its run item (``pk=run#<event run id>``,
``sk=run``, ``run_id``: the batch run): a claim, or that event's single-event run, that exists already cancels
the transaction; the cancellation reasons name the claim and its owner, and the chunk is retried without that
event. A claim in the run item's place also makes a later single-event delivery of the event (the workflow
redeployed as single-event) find it in the one request it starts with, the lease's conditional write. So an
event is claimed at most once, and a claimed event's run lists it. A crash between chunks leaves the later
events unclaimed: they form a new batch run when redelivered.

Unclear answers: each transaction carries a ``ClientRequestToken`` derived from the run, the chunk and its
events, so botocore's retry of a transaction that was applied but whose answer was lost is answered as the
first one (DynamoDB's 10-minute idempotency window). Where the retry fails anyway (the member item exists, the
token expired), the run's partition is read again and its member chunk items are the truth: the run's members
(and so its payload) are always its membership records, never the events in hand.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.chunking import MAX_ATTEMPTS, UnprocessedKeysError, get_all, pause, query_all
from polos.publish.events import EventRef
from polos.runtime.journal import (
    CLAIMED_BY,
    RUN_SK,
    Item,
    Journal,
    encode_run,
    event_run_id,
    now_iso,
    run_pk,
)
from polos.runtime.records import RunRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

logger = Logger(service="polos")

MEMBER_PREFIX = "member#"
# A transaction holds at most 100 actions: the run item, one member chunk and 98 claims.
MAX_CLAIMS_PER_TRANSACTION = 98


class BatchCreationError(RuntimeError):
    """A batch run could not be created (the records are left for SQS to deliver again)."""


class _UnclearOutcome(Exception):
    """A claim transaction may have been applied (its answer was lost); the partition tells."""


def claim_token(run_id: str, chunk: int, refs: list[EventRef], round_: int) -> str:
    """The ``ClientRequestToken`` of one claim transaction (at most 36 characters, DynamoDB's limit).

    The same run, chunk, events and round (a new round after a conflict or lost claims changes the
    request) always give the same token, so a resent request is recognised as the one already applied.
    """
    text = json.dumps([run_id, chunk, [ref.to_list() for ref in refs], round_], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def claim_pk(workflow_id: str, ref: EventRef) -> str:
    """The event's claim takes the place of the run item of the event's single-event run (``sk=run``)."""
    return run_pk(event_run_id(workflow_id, ref.topic, ref.sequence_id))


def _client() -> DynamoDBClient:
    return settings.dynamodb()


def read_claims(workflow_id: str, refs: list[EventRef]) -> dict[EventRef, str]:
    """The batch run that claimed each of ``refs`` (unclaimed ones are absent); strongly consistent."""
    return read_owners(workflow_id, refs).claims


@dataclass
class Owners:
    """Who holds each event already: a batch run's claim, or a single-event run of the same workflow."""

    claims: dict[EventRef, str] = field(default_factory=dict)
    singles: dict[EventRef, str] = field(default_factory=dict)


def read_owners(workflow_id: str, refs: list[EventRef]) -> Owners:
    """The claims of ``refs`` and the single-event runs of the workflow that hold any of them (strongly
    consistent BatchGetItem calls of 100 keys: a claim and the event's single-event run share one key).

    A workflow changed from single-event to batch while its messages were queued may hold an event in a
    single-event run already: that run, not a new batch, must finish it.
    """
    table = settings.get_settings().runs_table
    wanted = {(claim_pk(workflow_id, ref), RUN_SK): ref for ref in refs}
    try:
        found = get_all(_client(), table, list(wanted), consistent=True, projection="pk, sk, " + CLAIMED_BY)
    except UnprocessedKeysError as exc:
        raise BatchCreationError(f"claims of workflow {workflow_id!r} stayed unread: {exc}") from exc
    owners = Owners()
    for key, item in found.items():
        ref = wanted[key]
        if CLAIMED_BY in item:
            owners.claims[ref] = item[CLAIMED_BY]["S"]
        else:
            owners.singles[ref] = event_run_id(workflow_id, ref.topic, ref.sequence_id)
    return owners


def member_item(run_id: str, chunk: int, refs: list[EventRef], expires_at: int) -> Item:
    return {
        "pk": {"S": run_pk(run_id)},
        "sk": {"S": f"{MEMBER_PREFIX}{chunk:04d}"},
        "refs": {"S": json.dumps([ref.to_list() for ref in refs], separators=(",", ":"))},
        "expires_at": {"N": str(expires_at)},
    }


def members(items: list[Item]) -> list[EventRef]:
    """The member events listed by the member chunk items among ``items``, in sequence order."""
    refs: list[EventRef] = []
    for item in items:
        if item["sk"]["S"].startswith(MEMBER_PREFIX):
            refs.extend(EventRef.from_list(raw) for raw in json.loads(item["refs"]["S"]))
    return sorted(refs)


def load_members(run_id: str) -> list[EventRef]:
    """The member events of a batch run (one Query of its member chunk items)."""
    items = query_all(
        _client(),
        TableName=settings.get_settings().runs_table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :member)",
        ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}, ":member": {"S": MEMBER_PREFIX}},
    )
    return members(items)


@dataclass
class NewBatch:
    """The outcome of :func:`create_batch_run`.

    ``owner`` holds the run's lease for its first attempt. ``items`` is the run's partition as written
    (empty when no event could be claimed), ``members`` the
    events it claimed, ``taken`` the events other runs had claimed (event → run id), and ``unclaimed`` the
    events left unclaimed because creation stopped on an error (they form a new run when delivered again).
    """

    run_id: str
    owner: str
    items: list[Item] = field(default_factory=list)
    members: list[EventRef] = field(default_factory=list)
    taken: dict[EventRef, str] = field(default_factory=dict)
    unclaimed: list[EventRef] = field(default_factory=list)


def create_batch_run(workflow_id: str, run_id: str, refs: list[EventRef], owner: str) -> NewBatch:
    """Create batch run ``run_id`` of the unclaimed ``refs``, leased to ``owner`` for its first attempt."""
    config = settings.get_settings()
    stamp = now_iso()
    expires_at = int(time.time()) + config.retention_seconds
    run = RunRecord(
        run_id=run_id,
        workflow_id=workflow_id,
        status="running",
        attempts=1,
        message_attempts=1,  # created leased: its first execution
        trigger_type="batch",
        created_at=stamp,
        updated_at=stamp,
        lease_owner=owner,
        lease_until=time.time() + config.lease_seconds,
    )
    writer = _ChunkWriter(config.runs_table, workflow_id, run, expires_at)
    ordered = sorted(set(refs))
    for start in range(0, len(ordered), MAX_CLAIMS_PER_TRANSACTION):
        chunks_before = writer.chunks
        try:
            writer.claim(ordered[start : start + MAX_CLAIMS_PER_TRANSACTION])
        except Exception as exc:
            # Applied or not, the answer is unclear: the run's partition says what was written.
            writer.reload()
            if writer.chunks > chunks_before:
                logger.warning(
                    "claim transaction applied though its answer was lost",
                    extra={"run_id": run_id, "workflow_id": workflow_id, "error": repr(exc)},
                )
                continue
            if not writer.outcome.items:
                raise
            # The run exists with the chunks claimed so far; the rest stays unclaimed for a later run.
            logger.error(
                "batch run creation stopped; its remaining events stay unclaimed",
                extra={"run_id": run_id, "workflow_id": workflow_id, "error": repr(exc)},
            )
            writer.outcome.unclaimed.extend(ordered[start:])
            break
    return writer.outcome


class _ChunkWriter:
    """Writes a new batch run's chunks: the run item goes with the first chunk that claims anything."""

    def __init__(self, table: str, workflow_id: str, run: RunRecord, expires_at: int) -> None:
        self._table = table
        self._workflow_id = workflow_id
        self._run_item = encode_run(run, expires_at)
        self._expires_at = expires_at
        self.outcome = NewBatch(run_id=run.run_id, owner=str(run.lease_owner))

    @property
    def chunks(self) -> int:
        """Member chunk items written so far."""
        return sum(1 for item in self.outcome.items if item["sk"]["S"].startswith(MEMBER_PREFIX))

    def reload(self) -> None:
        """Take the run's items and members from its partition (one strongly consistent Query)."""
        items = Journal(_client(), self._table).query_partition(self.outcome.run_id)
        self.outcome.items = items
        self.outcome.members = members(items)

    def claim(self, chunk: list[EventRef]) -> None:
        """Claim ``chunk`` in one transaction, retried without the events other runs claimed first."""
        remaining = list(chunk)
        conflicts = rounds = 0
        while remaining:
            actions, first_claim = self._actions(remaining)
            token = claim_token(self.outcome.run_id, self.chunks, remaining, rounds)
            rounds += 1
            try:
                _client().transact_write_items(TransactItems=actions, ClientRequestToken=token)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                lost = self._lost_claims(reasons, remaining, first_claim)
                if lost:
                    remaining = [ref for ref in remaining if ref not in lost]
                    continue
                # A conflict with a concurrent transaction on the same claims: try again after a pause.
                conflicts += 1
                if conflicts == MAX_ATTEMPTS:
                    raise BatchCreationError(
                        f"batch run {self.outcome.run_id}: claims kept conflicting"
                    ) from exc
                pause(conflicts)
                continue
            if not self.outcome.items:
                self.outcome.items.append(self._run_item)
            self.outcome.items.append(actions[first_claim - 1]["Put"]["Item"])  # type: ignore[arg-type]
            self.outcome.members.extend(remaining)
            return

    def _actions(self, refs: list[EventRef]) -> tuple[list[TransactWriteItemTypeDef], int]:
        """The transaction for ``refs``, and the index of its first claim."""
        new_item = "attribute_not_exists(pk)"
        actions: list[TransactWriteItemTypeDef] = []
        if not self.outcome.items:
            actions.append(
                {"Put": {"TableName": self._table, "Item": self._run_item, "ConditionExpression": new_item}}
            )
        member = member_item(self.outcome.run_id, self.chunks, refs, self._expires_at)
        actions.append({"Put": {"TableName": self._table, "Item": member, "ConditionExpression": new_item}})
        first_claim = len(actions)
        for ref in refs:
            claim: Item = {
                "pk": {"S": claim_pk(self._workflow_id, ref)},
                "sk": {"S": RUN_SK},
                CLAIMED_BY: {"S": self.outcome.run_id},
                "expires_at": {"N": str(self._expires_at)},
            }
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": claim,
                        "ConditionExpression": new_item,
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        return actions, first_claim

    def _lost_claims(
        self, reasons: list[dict[str, Any]], refs: list[EventRef], first_claim: int
    ) -> set[EventRef]:
        """Events whose claim exists already; their owners go to ``taken`` (or ``unclaimed`` if unnamed:
        the event's single-event run holds it, which a redelivery finds)."""
        lost: set[EventRef] = set()
        for index, reason in enumerate(reasons):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            if index < first_claim:  # our own run or member item: an earlier send of ours was applied
                raise _UnclearOutcome(f"batch run {self.outcome.run_id}: its items exist already")
            ref = refs[index - first_claim]
            owner = (reason.get("Item") or {}).get(CLAIMED_BY, {}).get("S")
            if owner == self.outcome.run_id:
                raise _UnclearOutcome(f"batch run {self.outcome.run_id}: {ref} is claimed by it already")
            if owner:
                self.outcome.taken[ref] = owner
            else:  # the claim's owner is unknown here; a redelivery reads it
                self.outcome.unclaimed.append(ref)
            lost.add(ref)
        return lost

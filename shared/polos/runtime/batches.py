"""Batch membership: each event belongs to exactly one batch run of each batch workflow.

A batch run's membership is two kinds of items. Its *member chunk* items (``sk=member#<nnnn>`` in the
run's partition, up to :data:`MEMBERS_PER_ITEM` ``EventRef`` each) list the events it may hold; one
*claim* per event, in the partition of the event's single-event run, in the place of its run item
(``pk=run#<event run id>``, ``sk=run``, ``run_id``: the batch run), says which run does hold it. A claim is a
conditional ``PutItem`` (1 write unit): a claim, or that event's single-event run, that exists already wins,
and its old item names the owner. A claim in the run item's place also makes a later single-event delivery
of the event (the workflow redeployed as single-event) find it in the one request it starts with, the
lease's conditional write. A run's members are the listed events whose claim names it.

A new run is written in this order, so that a crash anywhere leaves a state a redelivery completes:

1. its member chunk items, listing every candidate (``BatchWriteItem``, idempotent);
2. the *anchor*: the first candidate it can claim (no run item exists without a claim naming it, so none
   is stranded without a delivery that leads to it);
3. its run item, leased to the creating attempt (conditional: a delivery of the anchor that found the
   claim but no run item may have created it first; see :func:`recover_batch_run`);
4. the other candidates' claims, concurrently;
5. only when a candidate was lost to another run: its chunk items rewritten without it.

Every claim naming a run is listed by it (the lists come first), and a run executes only once each listed
event's claim exists and its lists are exactly its claims (:func:`settle` on any later delivery does the
rest of steps 4-5 when the creating attempt died in between): so an event is claimed at most once, and a
claimed event's run lists it and gets it in its payload on every attempt. Claims never change: reading them
eventually consistently is safe, a stale answer only sends a conditional write that then names the owner.
An unclear answer (lost, throttled) is resolved the same way: the claim is sent again and its condition
says who holds the event.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from polos.aws import settings
from polos.aws.attribution import concurrently
from polos.aws.chunking import (
    BATCH_WRITE_MAX_ITEMS,
    UnprocessedKeysError,
    UnprocessedWritesError,
    get_all,
    query_all,
    write_all,
)
from polos.publish.events import EventRef
from polos.runtime.journal import (
    CLAIMED_BY,
    RUN_SK,
    Item,
    encode_run,
    event_run_id,
    now_iso,
    run_pk,
)
from polos.runtime.records import RunRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef

logger = Logger(service="polos")

MEMBER_PREFIX = "member#"
# A batch whose member list packs (zlib of its JSON) into INLINE_MEMBERS_BYTES keeps it in its run item and
# its anchor claim instead (a batch of 10: ~240 bytes, so neither item passes 1 KB and no chunk item is
# written); a larger one lists its members in chunk items.
MEMBERS_ATTRIBUTE = "members_z"
INLINE_MEMBERS_BYTES = 400
# Refs per member chunk item (~60 bytes each: ~6 KB, well under the 400 KB item limit; 10 fit in 1 KB).
MEMBERS_PER_ITEM = 98
PARALLEL_CLAIMS = 16  # claims sent at once (each its own PutItem)
_NEW_ITEM = "attribute_not_exists(pk)"


class BatchCreationError(RuntimeError):
    """A batch run could not be created (the records are left for SQS to deliver again)."""


def claim_pk(workflow_id: str, ref: EventRef) -> str:
    """The event's claim takes the place of the run item of the event's single-event run (``sk=run``)."""
    return run_pk(event_run_id(workflow_id, ref.topic, ref.sequence_id))


def _client() -> DynamoDBClient:
    return settings.dynamodb()


def _table() -> str:
    return settings.get_settings().runs_table


def read_claims(workflow_id: str, refs: list[EventRef]) -> dict[EventRef, str]:
    """The batch run that claimed each of ``refs`` (unclaimed ones are absent); strongly consistent."""
    return read_owners(workflow_id, refs, consistent=True).claims


@dataclass
class Owners:
    """Who holds each event already: a batch run's claim, or a single-event run of the same workflow."""

    claims: dict[EventRef, str] = field(default_factory=dict)
    singles: dict[EventRef, str] = field(default_factory=dict)


def read_owners(workflow_id: str, refs: list[EventRef], *, consistent: bool = False) -> Owners:
    """The claims of ``refs`` and the single-event runs of the workflow that hold any of them (BatchGetItem
    calls of 100 keys: a claim and the event's single-event run share one key; eventually consistent unless
    asked: neither ever changes hands, and a write the answer missed makes the claim's condition fail).

    A workflow changed from single-event to batch while its messages were queued may hold an event in a
    single-event run already: that run, not a new batch, must finish it.
    """
    wanted = {(claim_pk(workflow_id, ref), RUN_SK): ref for ref in refs}
    try:
        found = get_all(
            _client(), _table(), list(wanted), consistent=consistent, projection="pk, sk, " + CLAIMED_BY
        )
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


def claim(
    workflow_id: str, run_id: str, ref: EventRef, expires_at: int, packed: bytes | None = None
) -> str | None:
    """Claim ``ref`` for batch run ``run_id`` (one conditional PutItem): the run that holds it now —
    ``run_id`` when this request, or an earlier send of it, won — or ``None`` when the event's single-event
    run holds it. ``packed``: the run's member list, carried by its anchor claim (:func:`pack`)."""
    item: Item = {
        "pk": {"S": claim_pk(workflow_id, ref)},
        "sk": {"S": RUN_SK},
        CLAIMED_BY: {"S": run_id},
        "expires_at": {"N": str(expires_at)},
    }
    if packed is not None:
        item[MEMBERS_ATTRIBUTE] = {"B": packed}
    old = _put_new(item)
    if old is None:
        return run_id
    return str(old[CLAIMED_BY]["S"]) if CLAIMED_BY in old else None


def _found(exc: ClientError) -> dict[str, Any]:
    """The item that refused a conditional PutItem (``ReturnValuesOnConditionCheckFailure``); any other
    error is raised again."""
    if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        raise exc
    found = exc.response.get("Item")
    return found if isinstance(found, dict) else {}


def member_item(run_id: str, chunk: int, refs: list[EventRef], expires_at: int) -> Item:
    return {
        "pk": {"S": run_pk(run_id)},
        "sk": {"S": f"{MEMBER_PREFIX}{chunk:04d}"},
        "refs": {"S": json.dumps([ref.to_list() for ref in refs], separators=(",", ":"))},
        "expires_at": {"N": str(expires_at)},
    }


def pack(refs: list[EventRef]) -> bytes:
    """A member list as kept in a run item and its anchor claim: zlib of its compact JSON."""
    return zlib.compress(json.dumps([ref.to_list() for ref in refs], separators=(",", ":")).encode())


def _unpack(packed: bytes) -> list[EventRef]:
    return [EventRef.from_list(raw) for raw in json.loads(zlib.decompress(packed))]


def _chunk_refs(item: Item) -> list[EventRef]:
    return [EventRef.from_list(raw) for raw in json.loads(item["refs"]["S"])]


def _inline(item: Item) -> list[EventRef] | None:
    """The member list a run item keeps itself (``None``: its chunk items list them)."""
    packed = item.get(MEMBERS_ATTRIBUTE)
    return None if packed is None else _unpack(packed["B"])


def _is_member_item(item: Item) -> bool:
    return item["sk"]["S"].startswith(MEMBER_PREFIX)


def members(items: list[Item]) -> list[EventRef]:
    """The member events listed among a run's partition ``items`` (its run item or its member chunk
    items), in sequence order."""
    refs: set[EventRef] = set()
    for item in items:
        if _is_member_item(item):
            refs.update(_chunk_refs(item))
        elif item["sk"]["S"] == RUN_SK:
            refs.update(_inline(item) or [])
    return sorted(refs)


def load_members(run_id: str) -> list[EventRef]:
    """The member events of a batch run: its run item's list (one GetItem), else one Query of its member
    chunk items."""
    key: Item = {"pk": {"S": run_pk(run_id)}, "sk": {"S": RUN_SK}}
    run = _client().get_item(TableName=_table(), Key=key, ProjectionExpression="sk, " + MEMBERS_ATTRIBUTE)
    inline = _inline(run.get("Item", {}))
    if inline is not None:
        return sorted(inline)
    items = query_all(
        _client(),
        TableName=_table(),
        KeyConditionExpression="pk = :pk AND begins_with(sk, :member)",
        ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}, ":member": {"S": MEMBER_PREFIX}},
    )
    return members(items)


def put_items(items: list[Item]) -> None:
    """Put ``items`` (unconditional, so sending them again is harmless) in BatchWriteItem calls."""
    requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in items]
    for start in range(0, len(requests), BATCH_WRITE_MAX_ITEMS):
        try:
            write_all(_client(), _table(), requests[start : start + BATCH_WRITE_MAX_ITEMS])
        except UnprocessedWritesError as exc:
            raise BatchCreationError(f"member items stayed unwritten: {exc}") from exc


@dataclass
class NewBatch:
    """The outcome of :func:`create_batch_run` (or :func:`recover_batch_run`).

    ``owner`` holds the run's lease for its first attempt. ``items`` is the run's partition as written
    (empty when no event could be claimed), ``members`` the events it claimed, ``taken`` the events other
    runs had claimed (event → run id), and ``unclaimed`` the events whose holder is not a batch run known
    here (they are left for a redelivery to find it).
    """

    run_id: str
    owner: str
    items: list[Item] = field(default_factory=list)
    members: list[EventRef] = field(default_factory=list)
    taken: dict[EventRef, str] = field(default_factory=dict)
    unclaimed: list[EventRef] = field(default_factory=list)

    def note(self, ref: EventRef, holder: str | None) -> None:
        """``ref`` is held by ``holder``: a member when it is this run."""
        if holder == self.run_id:
            self.members.append(ref)
        elif holder is not None:
            self.taken[ref] = holder
        else:  # the event's single-event run holds it; a redelivery finds it
            self.unclaimed.append(ref)


def _new_run(workflow_id: str, run_id: str, owner: str) -> tuple[Item, int]:
    """The run item of a new batch run leased to ``owner`` for its first attempt, and its expiry."""
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
    return encode_run(run, expires_at), expires_at


def _put_run(item: Item, owner: str) -> bool:
    """Write a new run item; ``False`` when another attempt's run item is there already (a lost answer of
    our own write finds our own lease in it: ``True``)."""
    old = _put_new(item)
    return old is None or old.get("lease_owner", {}).get("S") == owner


def _put_new(item: Item) -> Item | None:
    """Write ``item`` unless its key exists; ``None`` when written, else the item found there."""
    try:
        _client().put_item(
            TableName=_table(),
            Item=item,
            ConditionExpression=_NEW_ITEM,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        return _found(exc)
    return None


def create_batch_run(workflow_id: str, run_id: str, refs: list[EventRef], owner: str) -> NewBatch:
    """Create batch run ``run_id`` of the unclaimed ``refs``, leased to ``owner`` for its first attempt."""
    run_item, expires_at = _new_run(workflow_id, run_id, owner)
    ordered = sorted(set(refs))
    outcome = NewBatch(run_id=run_id, owner=owner)
    packed = pack(ordered)
    inline = len(packed) <= INLINE_MEMBERS_BYTES
    listed: list[Item] = []
    if inline:
        run_item[MEMBERS_ATTRIBUTE] = {"B": packed}
    else:
        listed = [
            member_item(run_id, n, ordered[start : start + MEMBERS_PER_ITEM], expires_at)
            for n, start in enumerate(range(0, len(ordered), MEMBERS_PER_ITEM))
        ]
        put_items(listed)
    rest = list(ordered)
    while rest and not outcome.members:  # the anchor: the first event this run can claim
        ref = rest.pop(0)
        outcome.note(ref, claim(workflow_id, run_id, ref, expires_at, packed if inline else None))
    if not outcome.members:
        return outcome  # every event is held already (the chunk items stay unread until they expire)
    if not _put_run(run_item, owner):
        # A delivery of the anchor found its claim but no run item, and created the run itself.
        logger.warning("batch run created by a redelivery meanwhile", extra={"run_id": run_id})
        outcome.taken[outcome.members.pop()] = run_id
        outcome.unclaimed.extend(rest)
        return outcome
    for ref, holder in zip(rest, _claim_all(workflow_id, run_id, rest, expires_at), strict=True):
        outcome.note(ref, holder)
    outcome.members.sort()
    outcome.items = _relist([*listed, run_item], set(outcome.members))
    return outcome


def _claim_all(workflow_id: str, run_id: str, refs: Sequence[EventRef], expires_at: int) -> list[str | None]:
    """Each of ``refs``' holder after claiming it for ``run_id`` (concurrent PutItems)."""
    return concurrently(lambda ref: claim(workflow_id, run_id, ref, expires_at), refs, PARALLEL_CLAIMS)


def _relist(items: list[Item], won: set[EventRef]) -> list[Item]:
    """``items`` with each member list (chunk item, or run item) that lists an event not in ``won``
    rewritten without it."""
    changed: list[Item] = []
    result: list[Item] = []
    for item in items:
        inline = _inline(item) if item["sk"]["S"] == RUN_SK else None
        if inline is not None and any(ref not in won for ref in inline):
            item = {**item, MEMBERS_ATTRIBUTE: {"B": pack([ref for ref in inline if ref in won])}}
            _client().update_item(
                TableName=_table(),
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #members = :members",
                ExpressionAttributeNames={"#members": MEMBERS_ATTRIBUTE},
                ExpressionAttributeValues={":members": item[MEMBERS_ATTRIBUTE]},
            )
        elif _is_member_item(item):
            listed = _chunk_refs(item)
            kept = [ref for ref in listed if ref in won]
            if kept != listed:
                chunk = int(item["sk"]["S"].removeprefix(MEMBER_PREFIX))
                item = member_item(
                    item["pk"]["S"].removeprefix("run#"), chunk, kept, int(item["expires_at"]["N"])
                )
                changed.append(item)
        result.append(item)
    put_items(changed)
    return result


def settle(workflow_id: str, run_id: str, items: list[Item], known: set[EventRef]) -> list[Item]:
    """The run's partition ``items`` with its membership settled before it executes: every listed event
    claimed (by it, or by the run that won it), its chunk items listing its claims alone. ``known``: events
    already known to be claimed by it. Nothing is written when the run's creation went through."""
    listed = members(items)
    unsure = [ref for ref in listed if ref not in known]
    if not unsure:
        return items
    claims = read_owners(workflow_id, unsure).claims
    won = {ref for ref in listed if ref in known or claims.get(ref) == run_id}
    unclaimed = [ref for ref in unsure if ref not in claims]
    if unclaimed:
        expires_at = int(next(i for i in items if "expires_at" in i)["expires_at"]["N"])
        holders = _claim_all(workflow_id, run_id, unclaimed, expires_at)
        won |= {ref for ref, holder in zip(unclaimed, holders, strict=True) if holder == run_id}
    if won != set(listed):
        logger.warning("batch run's membership settled after its creation stopped", extra={"run_id": run_id})
    return _relist(items, won)


def recover_batch_run(
    workflow_id: str, run_id: str, items: list[Item], owner: str, claimed: list[EventRef]
) -> NewBatch | None:
    """A run whose anchor is claimed but whose run item is missing (its creating attempt died between the
    two): its run item written now, leased to ``owner``, and its membership settled. ``items``: its
    partition; ``claimed``: events whose claim names it (its anchor: no other claim precedes the run item).
    ``None`` when no member list is found (nothing to recover; or past its retention, TTL deletes it) or
    another attempt wrote the run item first."""
    listed = [item for item in items if _is_member_item(item)]
    if not listed:  # a small batch: its member list is in its anchor claim
        keys = [(claim_pk(workflow_id, ref), RUN_SK) for ref in claimed]
        found = get_all(_client(), _table(), keys, consistent=True).values()
        listed = [item for item in found if item.get(CLAIMED_BY, {}).get("S") == run_id and _inline(item)]
    if not listed or int(listed[0]["expires_at"]["N"]) <= time.time():
        return None
    run_item, _ = _new_run(workflow_id, run_id, owner)
    if not _is_member_item(listed[0]):
        run_item[MEMBERS_ATTRIBUTE] = listed[0][MEMBERS_ATTRIBUTE]
        listed = []
    if not _put_run(run_item, owner):
        return None
    logger.warning("batch run item written by a redelivery of its claimed events", extra={"run_id": run_id})
    settled = settle(workflow_id, run_id, [*listed, run_item], set())
    return NewBatch(run_id=run_id, owner=owner, items=settled, members=members(settled))

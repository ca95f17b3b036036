"""``Idempotency-Key`` records: the first request under a key commits its plan before doing any work.

Why not Powertools' idempotency utility: it stores its record as "in progress" while the function runs and
saves the response only once the function returns. After a crash midway it either blocks the retry until
the record expires or runs the function again from scratch, which would draw new event ids and sequence
ids and store the published events twice. Publishing needs the retry to *finish the first attempt's plan*
(same ids, same sequence ids), so the plan itself is what the record holds, claimed with one conditional
PutItem before anything is written (the publisher reads the key first, so a replay reserves nothing):

- no record (or an expired one): ours, status ``pending``; the caller executes the plan. It stays
  ``pending`` when done (a completion would cost every keyed publish a write): only a plan that changed
  while it was executed is completed with its final form;
- a record with another request hash: the key is in use for a different request (``409``);
- a ``completed`` record with our hash: its plan is the answer; nothing is done again;
- a ``pending`` record with our hash: an earlier attempt finished (every event of the plan is stored: the
  caller answers and sends them again) or stopped midway; the caller executes *its* plan, or, when that
  plan is too old to write, replaces it with a new one (conditional on the record still holding the old
  plan, so that two concurrent retries agree on one).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.errors import PolosError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

RETENTION_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255

Status = Literal["pending", "completed"]


class IdempotencyConflictError(PolosError):
    """The ``Idempotency-Key`` was used before with a different request."""


class IdempotencyInProgressError(IdempotencyConflictError):
    """An earlier request with the ``Idempotency-Key`` may still be in progress: retry later."""


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a key holds: the hash of the request that claimed it, its status and its plan (JSON)."""

    request_hash: str
    status: Status
    plan: str


def request_hash(body: Any) -> str:
    """SHA-256 of the canonical JSON of a request body (keys sorted, compact)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # ``surrogatepass``: a body with a lone surrogate is hashed, then refused naming its field.
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()


def _record(item: Mapping[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        request_hash=item["request_hash"]["S"], status=item["status"]["S"], plan=item["plan"]["S"]
    )


class IdempotencyStore:
    """The idempotency table (``pk`` = ``<scope>#<key>``); one record per scope and key, 24 h."""

    def __init__(self, scope: str, client: DynamoDBClient | None = None, table: str | None = None) -> None:
        self._scope = scope
        self._client = client or settings.dynamodb()
        self._table = table or settings.get_settings().idempotency_table

    def _item(
        self, key: str, request_hash: str, status: Status, plan: str
    ) -> dict[str, AttributeValueTypeDef]:
        return {
            "pk": {"S": f"{self._scope}#{key}"},
            "request_hash": {"S": request_hash},
            "status": {"S": status},
            "plan": {"S": plan},
            "expires_at": {"N": str(int(time.time()) + RETENTION_SECONDS)},
        }

    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key`` (one strongly consistent GetItem), or ``None``."""
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": f"{self._scope}#{key}"}}, ConsistentRead=True
        ).get("Item")
        if item is None or int(item["expires_at"]["N"]) < int(time.time()):
            return None
        return _record(item)

    def claim(self, key: str, request_hash: str, plan: str) -> IdempotencyRecord | None:
        """Claim ``key`` for ``plan`` (one conditional PutItem): ``None`` if ours, else the record found."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(key, request_hash, "pending", plan),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return _record(exc.response["Item"])  # type: ignore[typeddict-item]
        return None

    def replace(self, key: str, request_hash: str, old_plan: str, plan: str) -> IdempotencyRecord | None:
        """Replace the pending ``old_plan`` of ``key`` by ``plan`` (one conditional PutItem): ``None`` if
        replaced, else the record found (it may hold ``plan`` itself when an answer was lost)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(key, request_hash, "pending", plan),
                ConditionExpression="#status = :pending AND #plan = :old",
                ExpressionAttributeNames={"#status": "status", "#plan": "plan"},
                ExpressionAttributeValues={":pending": {"S": "pending"}, ":old": {"S": old_plan}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            item: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if item is None:  # past its retention (24 h) and removed meanwhile
                raise IdempotencyConflictError("the Idempotency-Key's record expired while retried") from None
            return _record(item)
        return None

    def complete(self, key: str, request_hash: str, plan: str) -> None:
        """Mark ``key`` completed with its final plan, one that changed while executed (one PutItem); kept
        24 h from now."""
        self._client.put_item(TableName=self._table, Item=self._item(key, request_hash, "completed", plan))

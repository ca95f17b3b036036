"""API keys and the check every HTTP API request passes first.

A key reads ``pk_<key id>_<secret>``: 16 hex characters of id, 64 of secret, both from :mod:`secrets`.
The keys table (``pk`` = key id) holds the SHA-256 of the secret, never the secret; the secret carries
256 random bits, so a plain hash is enough (no salt or slow hash: nothing to guess). Hashes are compared
with :func:`hmac.compare_digest`.

The API function checks the key itself on every request (:func:`authenticate`, one strongly consistent
GetItem, which also reads the key's scope), before routing or reading the body; there is no API Gateway
authorizer. An authorizer could not
keep the contract: API Gateway answers a request without its identity header itself (``401
{"message": "Unauthorized"}``), and its result cache lets a revoked key in until the cache expires. The
check costs one read request unit per request ($0.125 per million; a tenth of that per event at 10 events
a request) and spares a second function and its cold start.

One item serves at most 3,000 strongly consistent reads a second (DynamoDB's per-partition limit), so a
key is stored :data:`REPLICAS` times: the key's own item (``pk`` = key id, the one listed) and copies
(``pk`` = ``<key id>#<n>``, ``replicas`` on the key's item says how many) written and revoked together in
one transaction. Each check reads one of them at random, so a revoke that finished is seen by the very next
request whichever it reads. A key without copies (made before they existed) or a copy not found is checked
on the key's own item.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import Router
from botocore.exceptions import ClientError

from polos.api.errors import Forbidden
from polos.aws import settings
from polos.timestamps import utc_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

logger = Logger(service="polos")
router = Router()  # type: ignore[no-untyped-call]
CALLER = "api_key"  # the resolver context's entry holding the request's ApiKey (set by polos.api.app)

KEY_ID_HEX = 16
SECRET_HEX = 64
# Items per key: 4 x 3,000 reads/s = 12,000 checks/s per key, above API Gateway's default account quota of
# 10,000 requests/s (``python -m bench --only capacity``).
REPLICAS = 4
REPLICA_SEPARATOR = "#"
MAX_NAME_LENGTH = 128
_KEY = re.compile(rf"pk_(?P<id>[0-9a-f]{{{KEY_ID_HEX}}})_(?P<secret>[0-9a-f]{{{SECRET_HEX}}})")

# A key's scope (DESIGN §2): what it may do. Keys stored before scopes existed have none: they stay admin.
PUBLISH, READ, ADMIN = "publish", "read", "admin"
SCOPES = (PUBLISH, READ, ADMIN)
PUBLISH_PATH = "/api/v1/events/publish"
KEYS_ME_PATH = "/api/v1/keys/me"
DEAD_LETTERS_SUFFIX = "/dead-letters"
WORKFLOW_TOPIC_PREFIX = "workflow/"  # publishing there resumes runs (the official client's resume): admin

MISSING = "missing Authorization header; send 'Authorization: Bearer <api key>'"
MALFORMED = "Authorization header must be 'Bearer <api key>'"
INVALID = "invalid API key"
REVOKED = "API key has been revoked"


class KeyDenied(Exception):
    """A presented key is not accepted; the message is safe to show the client."""


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (never its secret)."""

    key_id: str
    name: str
    created_at: str
    revoked_at: str | None = None
    scope: str = ADMIN

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, needed: str | None) -> bool:
        """Whether this key's scope covers ``needed`` (``None``: any key may)."""
        return needed is None or self.scope in (needed, ADMIN)


def _replica_pk(key_id: str, replica: int) -> str:
    """The partition key of copy ``replica`` of a key (0: the key's own item)."""
    return key_id if replica == 0 else f"{key_id}{REPLICA_SEPARATOR}{replica}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key ``pk_<id>_<secret>``."""
    return f"pk_{secrets.token_hex(KEY_ID_HEX // 2)}_{secrets.token_hex(SECRET_HEX // 2)}"


def parse_key(key: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else ``None``."""
    match = _KEY.fullmatch(key)
    return (match["id"], match["secret"]) if match else None


def bearer_token(headers: Mapping[str, str] | None) -> str:
    """The key in an ``Authorization: Bearer <key>`` header; :class:`KeyDenied` when absent or malformed."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "authorization"), None)
    if value is None or not value.strip():
        raise KeyDenied(MISSING)
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise KeyDenied(MALFORMED)
    return token.strip()


def _decode(item: Mapping[str, Any]) -> ApiKey:
    revoked = item.get("revoked_at")
    return ApiKey(
        key_id=item["pk"]["S"].split(REPLICA_SEPARATOR)[0],  # the key's own item, or one of its copies
        name=item["name"]["S"],
        created_at=item["created_at"]["S"],
        revoked_at=None if revoked is None else revoked["S"],
        scope=item.get("scope", {}).get("S", ADMIN),
    )


def check_scope(scope: str) -> str:
    """``scope`` if it is one of :data:`SCOPES`; ``ValueError`` naming them otherwise."""
    if scope not in SCOPES:
        raise ValueError(f"key scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    return scope


class KeyStore:
    """The API keys table: create, list, revoke, verify."""

    def __init__(self, client: DynamoDBClient | None = None, table: str | None = None) -> None:
        self._client = client or settings.dynamodb()
        self._table = table or settings.get_settings().keys_table

    def create(self, name: str, key: str | None = None, scope: str = ADMIN) -> tuple[ApiKey, str]:
        """Store a new key named ``name`` (or the given well-formed ``key``) with ``scope``; returns it and
        the full key."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_LENGTH:
            raise ValueError(f"key name must be 1 to {MAX_NAME_LENGTH} characters")
        check_scope(scope)
        full = key or new_key()
        parts = parse_key(full)
        if parts is None:
            raise ValueError(f"API key must look like pk_<{KEY_ID_HEX} hex>_<{SECRET_HEX} hex>")
        key_id, secret = parts
        record = ApiKey(key_id=key_id, name=name.strip(), created_at=utc_iso(datetime.now(UTC)), scope=scope)
        item: dict[str, AttributeValueTypeDef] = {
            "name": {"S": record.name},
            "secret_sha256": {"S": _hash(secret)},
            "created_at": {"S": record.created_at},
            "scope": {"S": scope},
        }
        puts: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": _replica_pk(key_id, replica)}, **item}
                    | ({"replicas": {"N": str(REPLICAS)}} if replica == 0 else {}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for replica in range(REPLICAS)
        ]
        try:
            self._client.transact_write_items(TransactItems=puts)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise ValueError(f"an API key with id {key_id} already exists") from None
            raise
        return record, full

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        keys: list[ApiKey] = []
        kwargs: dict[str, Any] = {"TableName": self._table}
        while True:
            page = self._client.scan(**kwargs)
            items = page.get("Items", [])
            keys.extend(_decode(item) for item in items if REPLICA_SEPARATOR not in item["pk"]["S"])
            if "LastEvaluatedKey" not in page:
                return sorted(keys, key=lambda key: (key.created_at, key.key_id))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key and its copies in one transaction (it stays listed); ``KeyError`` when there is no
        such key. Revoking a revoked key keeps its first revocation time."""
        item = self._read(key_id)
        if item is None:
            raise KeyError(key_id)
        replicas = int(item["replicas"]["N"]) if "replicas" in item else 1
        updates: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": _replica_pk(key_id, replica)}},
                    "UpdateExpression": "SET revoked_at = if_not_exists(revoked_at, :now)",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": {":now": {"S": utc_iso(datetime.now(UTC))}},
                }
            }
            for replica in range(replicas)
        ]
        self._client.transact_write_items(TransactItems=updates)
        revoked = self._read(key_id)
        if revoked is None:  # deleted by hand meanwhile
            raise KeyError(key_id)
        return _decode(revoked)

    def _read(self, pk: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True
        ).get("Item")
        return item

    def verify(self, key: str) -> ApiKey:
        """An active ``key`` as stored (id, name, scope); :class:`KeyDenied` otherwise.

        One strongly consistent GetItem of one of the key's items, at random: a key revoked by a finished
        ``revoke`` is refused from the next request (an eventually consistent read could still return the
        item as it was before). A copy not found (a key made before copies, or an unknown key) is checked
        on the key's own item.
        """
        parts = parse_key(key)
        if parts is None:
            raise KeyDenied(INVALID)
        key_id, secret = parts
        replica = secrets.randbelow(REPLICAS)
        item = self._read(_replica_pk(key_id, replica))
        if item is None and replica != 0:
            item = self._read(key_id)
        stored = item["secret_sha256"]["S"] if item else ""
        # Compare even when the id is unknown, so both failures cost the same.
        if not hmac.compare_digest(_hash(secret), stored or _hash("")) or item is None:
            raise KeyDenied(INVALID)
        if "revoked_at" in item:
            raise KeyDenied(REVOKED)
        return _decode(item)


def authenticate(event: Mapping[str, Any], store: KeyStore | None = None) -> ApiKey:
    """The key of the request ``event`` (HTTP API payload 2.0); :class:`KeyDenied` with the reason."""
    try:
        return (store or KeyStore()).verify(bearer_token(event.get("headers")))
    except KeyDenied as denied:
        logger.info("API key refused", extra={"reason": str(denied)})
        raise


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, by its method and routed path (DESIGN §2): ``GET`` ``read``, but the
    dead letters ``admin`` (listing receives them from their queue) and the calling key's own scope any;
    publishing ``publish`` (to a ``workflow/…`` topic ``admin``: the route checks, as it reads the topic);
    anything else ``admin`` (run, cancel, resume, redrive)."""
    if method == "GET" and path == KEYS_ME_PATH:
        return None
    if method == "GET":
        return ADMIN if path.endswith(DEAD_LETTERS_SUFFIX) else READ
    if method == "POST" and path == PUBLISH_PATH:
        return PUBLISH
    return ADMIN


def refusal(key: ApiKey, needed: str, what: str) -> Forbidden:
    """The ``403`` of a request outside ``key``'s scope, naming the scope it needs."""
    return Forbidden(f"{what} needs an API key with scope {needed!r}; this key's scope is {key.scope!r}")


def caller() -> ApiKey:
    """The key of the request being routed."""
    key: ApiKey = router.context[CALLER]
    return key


def require(needed: str, what: str) -> None:
    """Refuse the request being routed unless its key's scope covers ``needed``."""
    key = caller()
    if not key.may(needed):
        raise refusal(key, needed, what)


@router.get(KEYS_ME_PATH)
def me() -> dict[str, Any]:
    """The calling key: id, name and scope (any key may ask)."""
    key = caller()
    return {"key_id": key.key_id, "name": key.name, "scope": key.scope, "created_at": key.created_at}

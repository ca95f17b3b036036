"""Timer shard leases: at most one sweep works a timer shard at a time.

A lease is an item ``timer-lease#<shard>`` in the runs table, taken with one conditional UpdateItem (free,
lapsed, or already this sweep's) and given back with another when the sweep is done with the shard. It
lasts until the sweeping invocation's end (plus clock skew): a sweep that dies holds it until it could no
longer be running, so no second sweep can send the same page while the first might still send it.
"""

from __future__ import annotations

import threading

from botocore.exceptions import ClientError

from polos.aws import settings
from polos.runtime import clock

# Lambdas' clocks agree within this (NTP-synchronised); a lease outlives its holder's deadline by it.
CLOCK_SKEW_SECONDS = 2.0


def _key(shard: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"timer-lease#{shard}"}, "sk": {"S": "lease"}}


def _refused(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class ShardLeases:
    """The shards one sweep (``owner``) holds, until ``until`` (epoch seconds, :mod:`polos.runtime.clock`)."""

    def __init__(self, owner: str, until: float) -> None:
        self.owner = owner
        self.until = until + CLOCK_SKEW_SECONDS
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def take(self, shard: int) -> bool:
        """Lease ``shard`` to this sweep (once: a shard it holds is not written again); ``False`` when
        another sweep holds it."""
        with self._lock:
            if shard in self._held:
                return True
        try:
            settings.dynamodb().update_item(
                TableName=settings.get_settings().runs_table,
                Key=_key(shard),
                UpdateExpression="SET lease_owner = :me, lease_until = :until",
                ConditionExpression=(
                    "attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :me"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":until": {"N": repr(self.until)},
                    ":now": {"N": repr(clock.now())},
                },
            )
        except ClientError as exc:
            if _refused(exc):
                return False
            raise
        with self._lock:
            self._held.add(shard)
        return True

    def release_all(self) -> None:
        """Give back every shard this sweep holds."""
        with self._lock:
            held, self._held = sorted(self._held), set()
        for shard in held:
            self.release(shard)

    def release(self, shard: int) -> None:
        """Give ``shard`` back (nothing when another sweep took it over after this one's lease lapsed)."""
        try:
            settings.dynamodb().update_item(
                TableName=settings.get_settings().runs_table,
                Key=_key(shard),
                UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :me",
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except ClientError as exc:
            if not _refused(exc):
                raise

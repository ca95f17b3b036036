"""The list price of metered AWS requests, by service: the one formula both the bench's bills and
``polos dev``'s per-run costs use (DynamoDB read and write units, SQS requests per 64 KB chunk)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from infra.metering import prices
from infra.metering.meter import Call


def request_usd(call: Call) -> float:
    """What one request is billed (its units or chunks at list price; services not priced here: 0)."""
    if call.service == "dynamodb":
        return (
            call.read_units * prices.DYNAMODB_READ_UNIT.usd
            + call.write_units * prices.DYNAMODB_WRITE_UNIT.usd
        )
    if call.service == "sqs":
        return call.billed_requests * prices.SQS_REQUEST.usd
    return 0.0


def usd_by_service(calls: Iterable[Call]) -> dict[str, float]:
    """Dollars of ``calls`` per service (``dynamodb``, ``sqs``, ...)."""
    found: defaultdict[str, float] = defaultdict(float)
    for call in calls:
        found[call.service] += request_usd(call)
    return dict(found)

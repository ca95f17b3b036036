"""Throttles injected into the runtime's own AWS clients through botocore event hooks (no local-stack fault).

``throttle(...)`` answers chosen calls with a throttle before they reach moto:

- ``per="call"`` (a ``before-call`` answer): the whole call is throttled, as if botocore's retries were
  spent, so the caller sees :class:`InfrastructureThrottled` at once;
- ``per="request"`` (a ``before-send`` answer): one HTTP request is throttled and botocore's retry loop
  (``polos.aws.retries``) sends it again.

``operations`` limits it to those ``Operation`` names, ``when`` to the calls whose parameters it accepts,
``times`` to that many throttles, ``rate`` to a seeded random share. ``transaction=True`` answers a
``TransactWriteItems`` with ``TransactionCanceledException`` whose reasons are ``ThrottlingError``.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from polos.aws import settings

DYNAMODB_THROTTLE = "ProvisionedThroughputExceededException"
SQS_THROTTLE = "RequestThrottled"
THROTTLED_URL = "https://throttled.invalid/"


class _Raw:
    """What botocore reads an answer's body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _error_body(service: str, operation: str, params: dict[str, Any], transaction: bool) -> dict[str, Any]:
    if transaction and operation == "TransactWriteItems":
        reasons = [{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity"}]
        reasons += [{"Code": "None"}] * (len(params.get("TransactItems", [])) - 1)
        return {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
            "CancellationReasons": reasons,
        }
    if service == "sqs":
        return {"__type": f"com.amazonaws.sqs#{SQS_THROTTLE}", "message": "Request is throttled."}
    return {
        "__type": f"com.amazonaws.dynamodb.v20120810#{DYNAMODB_THROTTLE}",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }


class Throttler:
    """Decides which calls are throttled; ``seen`` counts the throttles per ``service.Operation``."""

    def __init__(
        self,
        operations: set[str] | None,
        when: Callable[[dict[str, Any]], bool] | None,
        times: int | None,
        rate: float,
        seed: int,
        transaction: bool,
        skip: set[str],
    ) -> None:
        self.operations = operations
        self.skip = skip
        self.when = when
        self.times = times
        self.rate = rate
        self.transaction = transaction
        self.seen: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def decide(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        if self.operations is not None and operation not in self.operations:
            return None
        if operation in self.skip:
            return None
        if self.when is not None and not self.when(params):
            return None
        with self._lock:
            if self.times is not None and sum(self.seen.values()) >= self.times:
                return None
            if self.rate < 1.0 and self._random.random() >= self.rate:
                return None
            self.seen[f"{service}.{operation}"] += 1
        return _error_body(service, operation, params, self.transaction)

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def _clients() -> list[Any]:
    return [settings.dynamodb(), settings.sqs()]


@contextmanager
def throttle(
    operations: set[str] | None = None,
    *,
    when: Callable[[dict[str, Any]], bool] | None = None,
    times: int | None = None,
    rate: float = 1.0,
    seed: int = 0,
    per: str = "call",
    transaction: bool = False,
    skip: set[str] | None = None,
) -> Iterator[Throttler]:
    """Throttle the runtime's AWS calls (see the module's docstring) while the block runs; never the
    operations in ``skip``."""
    throttler = Throttler(operations, when, times, rate, seed, transaction, skip or set())

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        sent = params.get("body") or b"{}"  # the serialised request: JSON for DynamoDB and SQS
        body = throttler.decide(model.service_model.endpoint_prefix, model.name, json.loads(sent))
        if body is None:
            return None
        error = {
            "Code": body["__type"].rsplit("#", 1)[-1],
            "Message": body.get("message", body.get("Message")),
        }
        parsed: dict[str, Any] = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        if "CancellationReasons" in body:
            parsed["CancellationReasons"] = body["CancellationReasons"]
        return AWSResponse(THROTTLED_URL, 400, {}, _Raw(json.dumps(body).encode())), parsed

    def on_send(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        service, operation = event_name.split(".")[1:3]
        params = json.loads(request.body or b"{}") if request.body else {}
        body = throttler.decide(service, operation, params)
        if body is None:
            return None
        headers = {"x-amzn-query-error": f"{SQS_THROTTLE};Sender"} if service == "sqs" else {}
        answer = AWSResponse(request.url, 400, headers, _Raw(json.dumps(body).encode()))
        # Every before-send handler runs: moto's, after this one, must not apply the request it answers.
        request.url = THROTTLED_URL
        return answer

    event, handler = ("before-call", on_call) if per == "call" else ("before-send", on_send)
    registered = []
    for client in _clients():
        name = f"{event}.{client.meta.service_model.service_id.hyphenize()}"
        client.meta.events.register_first(name, handler)
        registered.append((client, name))
    try:
        yield throttler
    finally:
        for client, name in registered:
            client.meta.events.unregister(name, handler)

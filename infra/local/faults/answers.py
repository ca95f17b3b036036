"""AWS's error answers, made locally: a botocore ``AWSResponse`` that botocore parses (and retries, for a
throttle) exactly as it would the real service's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

JSON_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810", "sqs": "com.amazonaws.sqs"}


class _Body:
    """What botocore reads a response body from (``raw.stream()``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_answer(
    url: str, service: str, code: str, message: str, status: int = 400, **extra: Any
) -> AWSResponse:
    """A JSON-protocol error (DynamoDB and SQS both speak it) with AWS's ``__type`` and message."""
    body = {"__type": f"{JSON_PREFIX.get(service, service)}#{code}", "message": message, **extra}
    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = str(uuid.uuid4())
    headers["Content-Type"] = "application/x-amz-json-1.0"
    headers["x-amzn-query-error"] = f"{code};Sender"  # SQS's JSON protocol names its query-era code here
    return AWSResponse(url, status, headers, _Body(json.dumps(body).encode()))

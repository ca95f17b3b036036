"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload 2.0): see :mod:`polos.api.app`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from polos.api.app import handle, logger
from polos.aws.observability import traced


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)

"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload 2.0): see :mod:`polos.api.app`."""

from __future__ import annotations

from typing import Any

from polos.aws.startup import cold_imports

with cold_imports():
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from polos.api.app import handle
    from polos.aws.observability import traced
    from polos.aws.overload import lambda_time_left, time_budget

# Kept back from the function's remaining time for the answer itself: no AWS call may end after that
# (the API's timeout is 29 s, API Gateway's 30 s; polos.aws.retries bounds each attempt).
ANSWER_RESERVE_SECONDS = 1.0


# No `logger.inject_lambda_context`: its keys (function name, ARN, memory, request id, cold start) would
# repeat on every line what Lambda's own START/REPORT lines already say (CloudWatch Logs bills each byte).
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with time_budget(lambda_time_left(context, ANSWER_RESERVE_SECONDS)):
        return handle(event, context)

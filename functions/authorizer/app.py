"""Lambda entry point of the HTTP API's authorizer (simple responses, payload 2.0).

See :mod:`polos.api.keys`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from polos.api.keys import authorize


# No `logger.inject_lambda_context`: Lambda's own START/REPORT lines already name the function and request.
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event)

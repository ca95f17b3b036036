"""Lambda entry point of the timers function: every minute, the wake-ups of waits whose time has come.

See :mod:`polos.runtime.timers`.
"""

from __future__ import annotations

from typing import Any

from polos.aws.startup import cold_imports

with cold_imports():
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from polos.runtime.timers import sweep


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return {"woken": sweep(lambda: context.get_remaining_time_in_millis() / 1000)}

"""Lambda entry point of the worker: the SQS event source mappings of the workflow queues invoke it.

See :mod:`polos.runtime.worker`; the answer is the partial batch response (``batchItemFailures``).
"""

from __future__ import annotations

import functools
from typing import Any

from polos.aws.startup import cold_imports

with cold_imports():
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from polos.app import App, load_app
    from polos.aws import settings
    from polos.aws.observability import traced
    from polos.aws.overload import lambda_time_left, time_budget
    from polos.runtime import worker


# Kept back from the invocation's remaining time (its timeout is a run's lease) for the partial batch
# answer: no AWS call may end after that (polos.aws.retries bounds each attempt).
ANSWER_RESERVE_SECONDS = 2.0


@functools.cache
def app() -> App:
    """The app's workflows (``POLOS_APP``, default ``workflows``), imported once per process."""
    with cold_imports():
        return load_app(settings.get_settings().app_module)


# No `logger.inject_lambda_context`: its keys would repeat on every run's line what Lambda's own START/REPORT
# lines already say (one compact line per run, issue 12); a run's lines carry its run id (`bind_run`).
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with time_budget(lambda_time_left(context, ANSWER_RESERVE_SECONDS)):
        return dict(worker.handle(event, app()))

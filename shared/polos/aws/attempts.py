"""``max_attempts`` and the SQS receive count behind it (no AWS import: ``@workflow`` checks the range).

``max_attempts`` counts the executions of a workflow's code that may fail in a row for one message before
the run is ``failed`` and dead-lettered; it is set per deployment (``POLOS_MAX_ATTEMPTS``, the template's
``MaxAttempts``) and per workflow (``@workflow(max_attempts=N)``, which wins).
"""

from __future__ import annotations

DEFAULT_MAX_ATTEMPTS = 5
MIN_MAX_ATTEMPTS = 1
MAX_MAX_ATTEMPTS = 25
# Receives of a message that execute nothing: a duplicate turned away (another attempt holds the run), a
# wake-up not yet due, a throttled or crashed invocation before the run was taken. The queue's
# maxReceiveCount leaves room for one such receive per execution and this many more; the last receive
# executes nothing either (see ``polos.runtime.dead_letters``).
IDLE_RECEIVES = 10


def receive_limit(max_attempts: int) -> int:
    """The queue's ``maxReceiveCount`` behind ``max_attempts`` executions: each execution takes a receive,
    and as many receives again plus :data:`IDLE_RECEIVES` may execute nothing, so SQS never dead-letters a
    message before its executions are spent (they are counted on the run item, not by SQS)."""
    return 2 * max_attempts + IDLE_RECEIVES


def range_problem(max_attempts: object) -> str | None:
    """Why ``max_attempts`` is not a valid value, or ``None`` when it is."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        return f"max_attempts must be an integer, got {max_attempts!r}"
    if not MIN_MAX_ATTEMPTS <= max_attempts <= MAX_MAX_ATTEMPTS:
        return (
            f"max_attempts={max_attempts} is out of range; it must be {MIN_MAX_ATTEMPTS} <= max_attempts <= "
            f"{MAX_MAX_ATTEMPTS} (executions of the workflow's code that may fail in a row before the run "
            "is failed and dead-lettered)"
        )
    return None

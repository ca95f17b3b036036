"""Timers: the wake-up of a run waiting until a time.

Chosen by cost, precision and quotas (numbers in docs/guide.md, "Waiting"):

- a wake-up due within :data:`MAX_DELAY_SECONDS` (SQS's 15-minute ``DelaySeconds``) is a ``resume`` message
  sent now with that delay: one request, on time to the second;
- a later one is a timer item in the runs table (one PutItem), in one of :data:`SHARDS` partitions
  ``timer#<shard>``, sorted by the time it must be armed (:data:`ARM_AHEAD_SECONDS` before it is due).
  :func:`sweep` (the timers function, every minute; every second under ``polos dev``; at each drain under
  ``polos.testing``) queries every shard for timers whose arming time has passed, sends each one's resume
  message with the delay left, then deletes it. A crash in between sends it again at the next sweep: a
  duplicate wake-up, which the worker turns away. A sweep that runs late, or a timer written while a sweep
  ran, is simply found by the next sweep: nothing is checkpointed, so nothing can be skipped.

No per-wait AWS resource and no quota: a million waiting runs are a million small items.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from polos.aws import settings
from polos.aws.chunking import BATCH_WRITE_MAX_BYTES, BATCH_WRITE_MAX_ITEMS, chunked, query_all, write_all
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock
from polos.runtime.waits import WaitingFor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef

logger = Logger(service="polos")

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds
# Armed this long before it is due: a sweep each minute (even one a minute late) still finds the delay
# left within SQS's 15 minutes.
ARM_AHEAD_SECONDS = MAX_DELAY_SECONDS - 120
# Timer partitions: DynamoDB writes one partition at up to 1,000 items/s, so 16 take bursts of ~16,000
# waits a second; a sweep is one Query per shard.
SHARDS = 16
ARM_AT_WIDTH = 20  # arming times are zero-padded epoch milliseconds, so they sort as text


def _shard(run_id: str) -> int:
    return hashlib.sha256(run_id.encode()).digest()[0] % SHARDS


def _sort_key(moment: float) -> str:
    return str(int(moment * 1000)).zfill(ARM_AT_WIDTH)


def resume_message(workflow_id: str, run_id: str, step: str, delay: float) -> WorkflowMessage:
    """The wake-up of run ``run_id`` waiting in ``step``, delayed by ``delay`` s (capped to SQS's range)."""
    seconds = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay)))
    return WorkflowMessage(workflow_id, "resume", run_id=run_id, step=step, delay_seconds=seconds)


def arm(workflow_id: str, run_id: str, waiting: WaitingFor) -> None:
    """Make sure run ``run_id`` is woken when ``waiting`` is due (twice wakes it twice: harmless)."""
    wake_at = waiting.wake_at
    if wake_at is None:
        return
    left = wake_at - clock.now()
    if left <= MAX_DELAY_SECONDS:
        deliver([resume_message(workflow_id, run_id, waiting.step, left)])
        return
    arm_at = wake_at - ARM_AHEAD_SECONDS
    settings.dynamodb().put_item(
        TableName=settings.get_settings().runs_table,
        Item={
            "pk": {"S": f"timer#{_shard(run_id)}"},
            "sk": {"S": f"{_sort_key(arm_at)}#{run_id}#{waiting.step}"},
            "wf": {"S": workflow_id},
            "run_id": {"S": run_id},
            "step": {"S": waiting.step},
            "until": {"N": repr(wake_at)},
            "expires_at": {"N": str(int(wake_at) + settings.get_settings().retention_seconds)},
        },
    )


def sweep() -> int:
    """Send the wake-ups of every timer whose arming time has passed; returns how many were sent."""
    now = clock.now()
    return sum(_fire(f"timer#{shard}", now) for shard in range(SHARDS))


def _fire(partition: str, now: float) -> int:
    """Send the resume messages of one shard's armed timers, then delete them."""
    config = settings.get_settings()
    client = settings.dynamodb()
    items = query_all(
        client,
        TableName=config.runs_table,
        KeyConditionExpression="pk = :pk AND sk < :armed",
        ExpressionAttributeValues={":pk": {"S": partition}, ":armed": {"S": _sort_key(now) + "$"}},
    )
    if not items:
        return 0
    deliver([_wake_up(item, now) for item in items])
    for chunk in chunked(items, BATCH_WRITE_MAX_ITEMS, BATCH_WRITE_MAX_BYTES, lambda _item: 1):
        deletes: list[WriteRequestTypeDef] = [
            {"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}} for item in chunk
        ]
        write_all(client, config.runs_table, deletes)
    logger.info("timers fired", extra={"partition": partition, "timers": len(items)})
    return len(items)


def _wake_up(item: dict[str, Any], now: float) -> WorkflowMessage:
    left = float(item["until"]["N"]) - now
    return resume_message(item["wf"]["S"], item["run_id"]["S"], item["step"]["S"], left)

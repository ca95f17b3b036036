"""Timers: the wake-up of a run waiting until a time.

Chosen by cost, precision and quotas (numbers in docs/guide.md, "Waiting"):

- a wake-up due within :data:`MAX_DELAY_SECONDS` (SQS's 15-minute ``DelaySeconds``) is a ``resume`` message
  sent now with that delay: one request, on time to the second;
- a later one is a timer item in the runs table (one PutItem), in one of :data:`SHARDS` partitions
  ``timer#<shard>``, sorted by the time it must be armed (:data:`ARM_AHEAD_SECONDS` before it is due).
  :func:`sweep` (the timers function, every minute; every second under ``polos dev``; at each drain under
  ``polos.testing``) finds the shards with timers whose arming time has passed and works them on
  :data:`SWEEPERS` threads, a shard at a time per thread, round robin (:data:`TURN_PAGES` pages a turn,
  from a shard one further each minute), so a backlogged shard cannot starve the others. Each thread
  leases its shard first (:mod:`timer_leases`: overlapping sweeps never send the same timers), then page
  by page sends the resume messages of the first :data:`PAGE_SIZE` due timers, with the delay left, and
  deletes exactly those. A crash in between sends that page again at the next sweep: duplicate wake-ups,
  which the worker turns away. Deleting as it goes, each page and each sweep starts where the last one
  stopped; a sweep stops starting pages shortly before its Lambda's timeout, so every sweep makes progress
  whatever the backlog.

No per-wait AWS resource and no quota: a million waiting runs are a million small items.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from polos.aws import settings
from polos.aws.chunking import BATCH_WRITE_MAX_BYTES, BATCH_WRITE_MAX_ITEMS, chunked, write_all
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock
from polos.runtime.timer_leases import ShardLeases
from polos.runtime.waits import WaitingFor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import WriteRequestTypeDef

logger = Logger(service="polos")

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds
# Armed this long before it is due: a sweep each minute (even one a minute late) still finds the delay
# left within SQS's 15 minutes.
ARM_AHEAD_SECONDS = MAX_DELAY_SECONDS - 120
# Timer partitions: DynamoDB writes one partition at up to 1,000 items/s, so 16 take bursts of ~16,000
# waits a second; a sweep is one small Query per shard, and the pages of the shards with due timers.
SHARDS = 16
ARM_AT_WIDTH = 20  # arming times are zero-padded epoch milliseconds, so they sort as text
PAGE_SIZE = 100  # timers per page: one Query, 10 SendMessageBatch and 4 BatchWriteItem calls (~0.3 s)
TURN_PAGES = 10  # pages a thread sends of one shard before it hands the shard on to the next turn
SWEEPERS = 10  # threads of a sweep: the boto3 clients' connection pool (10) is not exceeded
# No page is started with less than this, plus the slowest page so far, left before the Lambda's timeout.
SAFETY_SECONDS = 5.0
LEASE_SECONDS = 60.0  # how long a sweep without a deadline (polos.testing) holds its shards


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
    item = timer_item(workflow_id, run_id, waiting.step, wake_at)
    settings.dynamodb().put_item(TableName=settings.get_settings().runs_table, Item=item)


def timer_item(workflow_id: str, run_id: str, step: str, wake_at: float) -> dict[str, Any]:
    """The timer item that wakes run ``run_id`` waiting in ``step`` at ``wake_at`` (epoch seconds)."""
    return {
        "pk": {"S": f"timer#{_shard(run_id)}"},
        "sk": {"S": f"{_sort_key(wake_at - ARM_AHEAD_SECONDS)}#{run_id}#{step}"},
        "wf": {"S": workflow_id},
        "run_id": {"S": run_id},
        "step": {"S": step},
        "until": {"N": repr(wake_at)},
        "expires_at": {"N": str(int(wake_at) + settings.get_settings().retention_seconds)},
    }


Remaining = Callable[[], float]  # seconds left before the invocation is killed


def sweep(remaining: Remaining | None = None) -> int:
    """Send the wake-ups of timers whose arming time has passed; returns how many were sent.

    ``remaining`` gives the seconds left before the invocation is killed (the Lambda context's); no page is
    started without time for it (:class:`_Pace`), and the next sweep goes on where this one stopped.
    Without it the sweep goes on until no shard has a due timer, holding each shard it works for
    :data:`LEASE_SECONDS` (``polos.testing``).
    """
    time_left = remaining or (lambda: math.inf)
    leases = ShardLeases(uuid.uuid4().hex, clock.now() + (remaining() if remaining else LEASE_SECONDS))
    with ThreadPoolExecutor(SWEEPERS, thread_name_prefix="polos-timers") as pool:
        turns = _Turns(_due_shards(pool))
        workers = min(SWEEPERS, len(turns.waiting))
        # Each thread in a copy of this context, as asyncio.to_thread would (the invocation's context vars).
        futures = [
            pool.submit(contextvars.copy_context().run, _sweeper, turns, leases, time_left)
            for _ in range(workers)
        ]
        sent = sum(future.result() for future in futures)
    leases.release_all()
    return sent


def _due_shards(pool: ThreadPoolExecutor) -> list[int]:
    """The shards with due timers, from the one this minute's sweep starts with (one further each minute).
    Their probes go out together on the sweep's threads: an idle sweep waits two round trips, not 16, and
    it runs every minute of every month (its Lambda duration is most of the stack's idle bill)."""
    first = int(clock.now() // 60) % SHARDS
    order = [(first + n) % SHARDS for n in range(SHARDS)]
    probes = [pool.submit(contextvars.copy_context().run, _has_due, shard) for shard in order]
    return [shard for shard, probe in zip(order, probes, strict=True) if probe.result()]


class _Turns:
    """The shards with due timers, handed out one turn at a time, round robin (thread-safe)."""

    def __init__(self, shards: list[int]) -> None:
        self.waiting = deque(shards)
        self._lock = threading.Lock()

    def next(self) -> int | None:
        with self._lock:
            return self.waiting.popleft() if self.waiting else None

    def again(self, shard: int) -> None:
        with self._lock:
            self.waiting.append(shard)


def _sweeper(turns: _Turns, leases: ShardLeases, remaining: Remaining) -> int:
    """One thread: leases a shard, sends up to :data:`TURN_PAGES` pages of it and hands it back to the
    turns while it has due timers, until none is left or time runs out; returns the wake-ups it sent."""
    sent = 0
    pace = _Pace(remaining)
    while pace.time_for_a_page() and (shard := turns.next()) is not None:
        try:
            if not leases.take(shard):
                continue  # another sweep is working it
            fired, more = _turn(shard, pace)
        except Exception:  # throttled past the retries, a queue refusing: the shard waits for the next sweep
            logger.exception("timer shard failed; the next sweep goes on with it", extra={"shard": shard})
            continue
        sent += fired
        if more:
            turns.again(shard)
    return sent


class _Pace:
    """Whether a page can still be sent before the invocation's end: :data:`SAFETY_SECONDS` plus the
    slowest page so far must be left (a page throttled through its retries takes far longer than ~0.3 s)."""

    def __init__(self, remaining: Remaining) -> None:
        self._remaining = remaining
        self._slowest = 0.0
        self._started = 0.0

    def time_for_a_page(self) -> bool:
        self._started = self._remaining()
        return self._started > SAFETY_SECONDS + self._slowest

    def page_done(self) -> None:
        self._slowest = max(self._slowest, self._started - self._remaining())


def _turn(shard: int, pace: _Pace) -> tuple[int, bool]:
    """Send, then delete, up to :data:`TURN_PAGES` pages of one shard's due timers; ``(sent, more)``."""
    sent = 0
    for page_number in range(TURN_PAGES):
        if page_number and not pace.time_for_a_page():
            return sent, True
        page, more = _page(shard)
        if page:
            _fire(page)
            sent += len(page)
        pace.page_done()
        if not more:
            return sent, False
    return sent, True


def _due_query(shard: int) -> dict[str, Any]:
    return {
        "TableName": settings.get_settings().runs_table,
        "KeyConditionExpression": "pk = :pk AND sk < :armed",
        "ExpressionAttributeValues": {
            ":pk": {"S": f"timer#{shard}"},
            ":armed": {"S": _sort_key(clock.now()) + "$"},
        },
    }


def _has_due(shard: int) -> bool:
    """Whether ``shard`` has a due timer (one small read; no lease is taken for an idle shard). A failed
    read says yes: a sweeper tries the shard again rather than the whole sweep failing."""
    try:
        answer = settings.dynamodb().query(**_due_query(shard), Limit=1, ProjectionExpression="pk")
    except Exception:
        logger.exception("timer shard unreadable; a sweeper tries it again", extra={"shard": shard})
        return True
    return bool(answer.get("Items"))


def _page(shard: int) -> tuple[list[dict[str, Any]], bool]:
    """The first :data:`PAGE_SIZE` due timers of a shard (strongly consistent: none already deleted), and
    whether more may follow. Sent pages are deleted, so each page starts where the last one ended."""
    answer = settings.dynamodb().query(**_due_query(shard), Limit=PAGE_SIZE, ConsistentRead=True)
    return answer.get("Items", []), "LastEvaluatedKey" in answer


def _fire(page: list[dict[str, Any]]) -> None:
    """Send a page's resume messages, then delete exactly those timers: a crash in between sends this
    page again, nothing more."""
    now = clock.now()
    deliver([_wake_up(item, now) for item in page])
    config = settings.get_settings()
    for chunk in chunked(page, BATCH_WRITE_MAX_ITEMS, BATCH_WRITE_MAX_BYTES, lambda _item: 1):
        deletes: list[WriteRequestTypeDef] = [
            {"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}} for item in chunk
        ]
        write_all(settings.dynamodb(), config.runs_table, deletes)
    logger.info("timers fired", extra={"partition": page[0]["pk"]["S"], "timers": len(page)})


def _wake_up(item: dict[str, Any], now: float) -> WorkflowMessage:
    left = float(item["until"]["N"]) - now
    return resume_message(item["wf"]["S"], item["run_id"]["S"], item["step"]["S"], left)

"""``python -m bench --only timers``: a backlog of due timers drained by the real timers function.

The handler the template deploys (``functions/timers/app.py``, so the real :func:`polos.runtime.timers.sweep`)
runs against :class:`bench.virtual_aws.StubDynamoDB` and :class:`~bench.virtual_aws.StubSqs`, which answer
at AWS's per-call latencies and within its limits, on a virtual clock: EventBridge Scheduler invokes it
once a minute with the function's timeout from ``infra/model.py`` (Lambda's maximum is 15 minutes). Every
timer is due at the start (a million runs waiting until the same midnight). Printed: the wake-ups sent
each minute, in total and per shard, and PASS/FAIL against the target (issue 22): at least
:data:`TARGET_PER_MINUTE` a minute, every shard served every minute while it has due timers, each wake-up
sent once, no invocation reaching its timeout (and so none overlapping the next).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.virtual_aws import (
    BATCH_WRITE_SECONDS,
    QUERY_SECONDS,
    SEND_BATCH_SECONDS,
    UPDATE_ITEM_SECONDS,
    LambdaTimeout,
    StubDynamoDB,
    StubPartition,
    StubSqs,
    VirtualTime,
)

TARGET_PER_MINUTE = 100_000
FULL_SIZE = 1_000_000
SMOKE_SIZE = 20_000
MAX_LAMBDA_SECONDS = 900
SCHEDULE_SECONDS = 60  # rate(1 minute)
START = 1_800_000_000.0  # the virtual epoch second every timer is due at
RUNS_TABLE = "bench-runs"


@dataclass
class Minute:
    """One scheduled invocation: what it sent, per shard, and how long it ran."""

    sent: Counter[int]
    seconds: float
    timed_out: bool
    backlogged: set[int]  # shards with due timers when it started


@dataclass
class Drain:
    timers: int
    timeout_seconds: int
    memory_mb: int
    minutes: list[Minute] = field(default_factory=list)
    duplicates: int = 0
    missing: int = 0

    @property
    def drain_minutes(self) -> float:
        """Virtual minutes from the first invocation to the end of the last send."""
        if not self.minutes:
            return 0.0
        return (SCHEDULE_SECONDS * (len(self.minutes) - 1) + self.minutes[-1].seconds) / 60

    @property
    def per_minute(self) -> float:
        return self.timers / self.drain_minutes if self.drain_minutes else 0.0

    @property
    def starved(self) -> list[tuple[int, int]]:
        """(minute, shard) of every shard that had due timers and got no wake-up sent that minute."""
        return [
            (number, shard)
            for number, minute in enumerate(self.minutes, 1)
            for shard in sorted(minute.backlogged)
            if not minute.sent[shard]
        ]

    @property
    def checks(self) -> list[tuple[str, bool]]:
        return [
            (
                f"drains at >= {TARGET_PER_MINUTE:,} a minute ({self.per_minute:,.0f})",
                self.per_minute >= TARGET_PER_MINUTE,
            ),
            ("every shard served every minute while it had due timers", not self.starved),
            (
                f"each wake-up sent once ({self.duplicates} twice, {self.missing} never)",
                not self.duplicates and not self.missing,
            ),
            ("no invocation reached its timeout", not any(minute.timed_out for minute in self.minutes)),
            (
                "one Lambda at a time (each invocation done within its minute)",
                all(minute.seconds <= SCHEDULE_SECONDS for minute in self.minutes),
            ),
            (
                f"the function's timeout fits Lambda's {MAX_LAMBDA_SECONDS} s",
                self.timeout_seconds <= MAX_LAMBDA_SECONDS,
            ),
        ]

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks)


@contextlib.contextmanager
def _stubbed(time: VirtualTime, dynamodb: StubDynamoDB, sqs: StubSqs) -> Iterator[None]:
    """The runtime's clients, clock and retry pauses replaced (and its logs counted, not printed)."""
    from polos.aws import chunking, settings
    from polos.publish import fanout
    from polos.runtime import clock

    from bench.logs import tapped

    def pause(attempt: int) -> None:
        time.spend(min(chunking.MAX_DELAY_SECONDS, chunking.BASE_DELAY_SECONDS * 2 ** (attempt - 1)))

    env = {settings.ENV_RUNS_TABLE: RUNS_TABLE, settings.ENV_QUEUE_URL_PREFIX: "https://sqs.bench/1/polos-"}
    saved_env = {name: os.environ.get(name) for name in env}
    patches: list[tuple[Any, str, Any]] = [
        (settings, "dynamodb", lambda: dynamodb),
        (settings, "sqs", lambda: sqs),
        (clock, "now", time.now),
        (chunking, "pause", pause),
        (fanout, "pause", pause),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    os.environ.update(env)
    settings.get_settings.cache_clear()
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        with tapped():
            yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        for name, old in saved_env.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        settings.get_settings.cache_clear()


def _backlog(size: int) -> dict[str, StubPartition]:
    """``size`` timers, all due at :data:`START`, in the shards :func:`polos.runtime.timers.arm` puts them."""
    from polos.runtime import timers

    wake_at = START + timers.ARM_AHEAD_SECONDS
    by_shard: dict[int, list[str]] = {}
    items: dict[str, str] = {}  # sort key -> run id
    for n in range(size):
        run_id = f"run_{n:026x}"
        item = timers.timer_item("sleeper", run_id, "nap", wake_at)
        by_shard.setdefault(timers._shard(run_id), []).append(item["sk"]["S"])
        items[item["sk"]["S"]] = run_id

    partitions: dict[str, StubPartition] = {}
    for shard, keys in by_shard.items():
        partition = StubPartition(lambda key: timers.timer_item("sleeper", items[key], "nap", wake_at))
        partition.load(keys)
        partitions[f"timer#{shard}"] = partition
    return partitions


def simulate(size: int, max_minutes: int = 60) -> Drain:
    """Drain ``size`` due timers with the timers function invoked once a minute (virtual time)."""
    from infra.local.functions import load_handler
    from infra.model import TIMERS_FUNCTION

    handler = load_handler(TIMERS_FUNCTION)
    time = VirtualTime(START)
    dynamodb, sqs = StubDynamoDB(time, _backlog(size)), StubSqs(time)
    shard_of = {key: int(key.split("#")[1]) for key in dynamodb.partitions}
    drain = Drain(size, TIMERS_FUNCTION.timeout_seconds, TIMERS_FUNCTION.memory_mb)
    with _stubbed(time, dynamodb, sqs):
        for number in range(max_minutes):
            before = {shard_of[key]: len(part) for key, part in dynamodb.partitions.items()}
            backlogged = {shard for shard, count in before.items() if count}
            if not backlogged:
                break
            start = START + SCHEDULE_SECONDS * number
            timed_out = False
            with time.invocation(start, TIMERS_FUNCTION.timeout_seconds) as context:
                try:
                    handler({}, context)
                except LambdaTimeout:
                    timed_out = True
            sent = Counter(
                {
                    shard_of[key]: before[shard_of[key]] - len(part)
                    for key, part in dynamodb.partitions.items()
                }
            )
            drain.minutes.append(Minute(sent, time.ended - start, timed_out, backlogged))
    drain.duplicates = sum(n - 1 for n in sqs.sent.values() if n > 1)
    drain.missing = size - len(sqs.sent)
    return drain


def report(drain: Drain) -> str:
    """The table and verdicts."""
    lines = [
        f"timers: {drain.timers:,} due timers drained by the timers function ({drain.timeout_seconds} s, "
        f"{drain.memory_mb} MB), invoked every {SCHEDULE_SECONDS} s; virtual time, AWS latencies: Query "
        f"{QUERY_SECONDS * 1000:.0f} ms, UpdateItem {UPDATE_ITEM_SECONDS * 1000:.0f} ms, BatchWriteItem (25) "
        f"{BATCH_WRITE_SECONDS * 1000:.0f} ms, SendMessageBatch (10) {SEND_BATCH_SECONDS * 1000:.0f} ms",
        "",
        f"{'minute':>6} {'sent':>9} {'left':>9} {'busy s':>7} {'shards served':>13} "
        f"{'per shard min..max':>19}",
    ]
    left = drain.timers
    for number, minute in enumerate(drain.minutes, 1):
        total = sum(minute.sent.values())
        left -= total
        served = sum(1 for shard in minute.backlogged if minute.sent[shard])
        counts = [minute.sent[shard] for shard in minute.backlogged]
        lines.append(
            f"{number:>6} {total:>9,} {left:>9,} {minute.seconds:>7.1f} "
            f"{served:>6}/{len(minute.backlogged):<6} {min(counts):>9,}..{max(counts):<8,}"
        )
    lines += [
        "",
        f"drain rate: {drain.timers:,} in {drain.drain_minutes:.2f} min = {drain.per_minute:,.0f} a minute",
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {label}" for label, ok in drain.checks]
    lines.append(f"timers: {'PASS' if drain.passed else 'FAIL'}")
    return "\n".join(lines)


def main(*, smoke: bool = False) -> int:
    drain = simulate(SMOKE_SIZE if smoke else FULL_SIZE)
    print(report(drain))
    return 0 if drain.passed else 1

"""The timers drain simulation (``python -m bench --only timers``) at smoke size: the real timers function on
the stub AWS, in virtual time."""

from __future__ import annotations

import pytest

import bench.__main__ as bench_main
from bench import timers


def test_the_smoke_backlog_drains_past_the_target_with_every_shard_served_and_each_wake_up_sent_once() -> (
    None
):
    drain = timers.simulate(timers.SMOKE_SIZE)
    assert drain.passed, timers.report(drain)
    assert sum(sum(minute.sent.values()) for minute in drain.minutes) == timers.SMOKE_SIZE
    assert {shard for minute in drain.minutes for shard in minute.sent} == set(range(16))


def test_a_backlog_bigger_than_one_invocation_can_send_drains_over_several_minutes_every_shard_each_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polos.runtime import timers as runtime_timers

    monkeypatch.setattr(runtime_timers, "SWEEPERS", 1)  # one thread: ~18,000 wake-ups an invocation
    drain = timers.simulate(30_000)
    assert len(drain.minutes) >= 2, timers.report(drain)
    assert not drain.starved and not drain.duplicates and not drain.missing, timers.report(drain)


def test_python_m_bench_only_timers_prints_the_table_and_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_main.main(["--only", "timers", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "drain rate: 20,000 in" in out and "timers: PASS" in out

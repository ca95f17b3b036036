"""Event flow control (DESIGN §1c): debounce, throttle and rate limits, judged by the runs API and by when
each run's first step was called (the wait clock's time: ``Stack.advance`` skips time, nothing sleeps).

They hold under AWS's faults too: ``POLOS_AWS_FAULTS=shuffle,duplicates,pollers,throttle`` (SQS's order,
duplicate deliveries, concurrent pollers, DynamoDB throttling)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import flow_app
import pytest
from flow_app import DEBOUNCE_TOPIC, RATE_TOPIC, THROTTLE, THROTTLE_TOPIC, held_messages, starts
from polos import EventPayload, WorkflowContext, workflow
from polos.aws import settings
from polos.errors import WorkflowDefinitionError
from polos.publish.fanout import send_bodies
from polos.runtime import clock, event_flow
from polos.testing import Stack, local_stack

from infra.local.faults.config import AwsFaults


@pytest.fixture
def stack() -> Iterator[Stack]:
    flow_app.STARTS.clear()
    with local_stack(flow_app.app(), max_attempts=25) as opened:
        yield opened


def publish(stack: Stack, topic: str, users: list[str]) -> list[dict[str, Any]]:
    answer = stack.publish(topic, [{"data": {"user": user}} for user in users])
    events: list[dict[str, Any]] = answer["events"]
    return events


def run_events(stack: Stack, workflow_id: str, status: str | None = None) -> Counter[str]:
    return Counter(e for run in stack.runs(workflow_id, status) for e in run["trigger"]["event_ids"])


def test_a_debounced_burst_of_five_starts_one_run_with_the_last_event_after_the_period(stack: Stack) -> None:
    burst = []
    for _ in range(5):  # 3 s apart: each within the period of the one before
        burst += publish(stack, DEBOUNCE_TOPIC, ["a"])
        stack.drain()
        stack.advance(seconds=3)
    other = publish(stack, DEBOUNCE_TOPIC, ["b"])
    stack.drain()
    assert starts("debounced") == [], "no run while the burst goes on"
    stack.advance(seconds=6)  # 9 s after the burst's last event
    stack.drain()
    assert starts("debounced", "a") == [], "not before the period passed without a newer event"
    stack.advance(seconds=2)
    stack.drain()
    assert [s["event"] for s in starts("debounced", "a")] == [burst[-1]["id"]], "one run, the last event"
    stack.advance(seconds=60)
    stack.drain()
    assert [s["event"] for s in starts("debounced")] == [burst[-1]["id"], other[0]["id"]]
    runs = stack.runs("debounced")
    assert {run["status"] for run in runs} == {"completed"}
    assert run_events(stack, "debounced") == Counter([burst[-1]["id"], other[0]["id"]]), "no other run"


def test_a_steady_stream_still_starts_a_run_by_the_timeout(stack: Stack) -> None:
    first_at = clock.now()
    published: list[tuple[float, str]] = []
    drained: list[float] = []
    for second in range(56):  # an event every 4 s for 56 s: never a quiet period of 10 s
        if second % 4 == 0:
            published += [(clock.now(), e["id"]) for e in publish(stack, DEBOUNCE_TOPIC, ["s"])]
        drained.append(clock.now())
        stack.drain()
        stack.advance(seconds=1)
    stack.advance(seconds=30)
    stack.drain()
    runs = starts("debounced", "s")
    assert runs, "a run started although no quiet period came"
    # Slack: SQS delays are whole seconds, and the queues are only read at each drain of this loop (the
    # clock also moves by the real time a round takes).
    slack = 1 + max(b - a for a, b in itertools.pairwise(drained))
    late = runs[0]["at"] - (first_at + 30)
    assert late <= slack, f"the first run by the timeout (30 s): {late:.2f} s after it (slack {slack:.2f} s)"
    # The burst's last event so far: the one published in the round the burst fired may come after it.
    before = [event for at, event in published if at <= runs[0]["at"]]
    assert runs[0]["event"] in before[-2:], "with the burst's last event so far"
    # The stream goes on in new bursts (an event whose delivery was delayed past its burst's end, e.g. a
    # throttled receive, starts one of its own), each run a later event than the one before.
    seqs = [run["seq"] for run in sorted(runs, key=lambda run: run["at"])]
    assert len(seqs) >= 2 and seqs == sorted(set(seqs)), seqs


ADMISSION_LAG_SECONDS = 0.5


@pytest.mark.parametrize("shards", [1, 2])
def test_throttle_drops_nothing_and_starts_at_most_limit_per_period(
    stack: Stack, shards: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with the key's window in 2 shards (of 1 start each), as a key of a high limit / period has."""
    monkeypatch.setattr(event_flow, "shards", lambda limit: shards)
    events = publish(stack, THROTTLE_TOPIC, ["t"] * 7 + ["u"])
    stack.drain()
    queued = stack.runs("throttled", "queued")
    assert len(queued) == 5 and all(run["waiting_for"]["kind"] == "throttle" for run in queued), queued
    assert {run["waiting_for"]["key"] for run in queued} == {"t"}
    assert all("until" in run["waiting_for"] for run in queued)
    for _ in range(40):  # 40 s, a second at a time
        stack.advance(seconds=1)
        stack.drain()
    started = starts("throttled", "t")
    assert Counter(s["event"] for s in started) == Counter(e["id"] for e in events[:7]), "each started once"
    times = sorted(s["at"] for s in started)
    # The window counts a start at admission; the step's first line comes a little later, by a lag that
    # varies per run (tens of ms on a loaded machine). The clock moves a whole second between drains, so a
    # third start inside the window would come at least a second early: half a second tells them apart.
    crowded = [(a, b) for a, b in zip(times, times[2:], strict=False) if b - a < 10 - ADMISSION_LAG_SECONDS]
    assert not crowded, f"more than 2 starts within 10 s: {crowded} of {times}"
    by_time = [s["seq"] for s in sorted(started, key=lambda s: (s["at"], s["seq"]))]
    # Concurrent pollers may start a higher sequence_id before a lower one arrives; with several shards,
    # order is kept within each one (guarantees.md).
    if AwsFaults.resolve().pollers is None and shards == 1:
        assert by_time == sorted(by_time), "the rest start later, by sequence_id"
    assert len(starts("throttled", "u")) == 1, "another key is not held up"
    assert {run["status"] for run in stack.runs("throttled")} == {"completed"}


def test_rate_limit_runs_one_and_lists_the_rest_skipped(stack: Stack) -> None:
    events = publish(stack, RATE_TOPIC, ["r"] * 4)
    stack.drain()
    ran = [s["event"] for s in starts("limited")]
    # One run: the first event to arrive (by sequence_id within one delivery of SQS records).
    assert len(ran) == 1 and ran[0] in {e["id"] for e in events}, ran
    skipped = stack.runs("limited", "skipped")
    assert Counter(e for run in skipped for e in run["trigger"]["event_ids"]) == Counter(
        e["id"] for e in events if e["id"] != ran[0]
    ), "the rest listed skipped"
    assert all(run["steps"] == [] and run["attempts"] == 0 for run in skipped), "no execution, no steps"
    stack.advance(seconds=61)
    later = publish(stack, RATE_TOPIC, ["r"])
    stack.drain()
    assert [s["event"] for s in starts("limited")] == [ran[0], later[0]["id"]], "a new window"


def _handler(ctx: WorkflowContext, payload: EventPayload) -> Any:
    raise AssertionError("never called")


async def _async_handler(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"batch_size": 10, "debounce": {"period": 5}}, "batch workflow"),
        ({"batch_size": 5, "throttle": {"limit": 1, "period": 5}}, "batch workflow"),
        ({"trigger_on_event": None, "rate_limit": {"limit": 1, "period": 5}}, "event-triggered"),
        ({"debounce": {"key": "data..user", "period": 5}}, "dotted path"),
        ({"debounce": {"key": "data user", "period": 5}}, "dotted path"),
        ({"throttle": {"limit": 1, "period": 0.5}}, "between 1 s and 7 days"),
        ({"rate_limit": {"limit": 1, "period": 8 * 86400}}, "between 1 s and 7 days"),
        ({"debounce": {"period": 5, "timeout": 700000}}, "between 1 s and 7 days"),
        ({"throttle": {"limit": 0, "period": 5}}, ">= 1"),
        ({"rate_limit": {"limit": 0, "period": 5}}, ">= 1"),
        ({"throttle": {"limit": 1001, "period": 5}}, "<= 1000"),
        ({"throttle": {"limit": 1, "period": 5, "burst": 2}}, "unknown field"),
    ],
)
def test_options_that_do_not_fit_fail_at_decoration_naming_option_value_and_rule(
    options: dict[str, Any], named: str
) -> None:
    kwargs: dict[str, Any] = {"id": "bad-flow", "trigger_on_event": "flow/bad", **options}
    with pytest.raises(WorkflowDefinitionError) as raised:
        workflow(**kwargs)(_async_handler)
    message = str(raised.value)
    option = next(name for name in ("debounce", "throttle", "rate_limit") if name in options)
    assert option in message and named in message, message
    value = options[option]
    assert any(repr(v) in message for v in [value, *value.values()]), message


def test_polos_runs_takes_status_skipped() -> None:
    from infra.cli.main import build_parser

    args = build_parser().parse_args(["runs", "--status", "skipped"])
    assert args.status == "skipped"


def test_throttled_runs_start_by_sequence_id_when_lower_ids_arrive_in_later_deliveries(stack: Stack) -> None:
    events = publish(stack, THROTTLE_TOPIC, ["o"] * 6)
    by_seq = held_messages("throttled")
    assert sorted(by_seq) == [e["sequence_id"] for e in events], "one message per event"
    first, second, *rest = sorted(by_seq)
    # The two lowest start at once (the limit: 2 per 10 s); the rest arrive one delivery at a time, highest
    # first, so each is booked later while higher ones already wait.
    for seq in [first, second, *reversed(rest)]:
        send_bodies(settings.get_settings().queue_url("throttled"), [(by_seq[seq], 0)])
        stack.drain()
    queued = stack.runs("throttled", "queued")
    assert len(queued) == 4 and all(run["waiting_for"]["kind"] == "throttle" for run in queued), queued
    for _ in range(40):  # 40 s, a second at a time
        stack.advance(seconds=1)
        stack.drain()
    started = starts("throttled", "o")
    assert Counter(s["event"] for s in started) == Counter(e["id"] for e in events), "each started once"
    # The runs of one turn (2 per period of 10 s) start together, their delayed messages seen up to a round or
    # two apart (SQS delays are whole seconds): a run starts no later than any run with a higher
    # sequence_id by half a period or more (a turn later).
    late = [
        (a["seq"], b["seq"])
        for a in started
        for b in started
        if a["seq"] < b["seq"] and a["at"] >= b["at"] + THROTTLE["period"] / 2
    ]
    by_time = [s["seq"] for s in sorted(started, key=lambda s: (s["at"], s["seq"]))]
    assert not late, f"the waiting runs start by sequence_id: {by_time} (later than a higher id: {late})"
    times = sorted(s["at"] for s in started)
    # The window counts a start at admission; the step's first line comes a little later, by a lag that
    # varies per run (tens of ms on a loaded machine). The clock moves a whole second between drains, so a
    # third start inside the window would come at least a second early: half a second tells them apart.
    crowded = [(a, b) for a, b in zip(times, times[2:], strict=False) if b - a < 10 - ADMISSION_LAG_SECONDS]
    assert not crowded, f"more than 2 starts within 10 s: {crowded} of {times}"
    assert {run["status"] for run in stack.runs("throttled")} == {"completed"}

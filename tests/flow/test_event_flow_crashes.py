"""Crash matrix of event flow control: the worker dies right after each AWS request of debouncing and
throttling a key's events (the crash-matrix harness's ``Meter.crash_after``; the invocation's messages
come back, the crashed attempt's lease lapses). Then: a debounced burst started exactly one run, with its
last event; every throttled event started exactly once, never more than ``limit`` per ``period``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flow_app
import pytest
from flow_app import DEBOUNCE_TOPIC, THROTTLE, THROTTLE_TOPIC, held_messages, starts
from helpers.crash_points import crash_points
from polos.aws import settings
from polos.publish.fanout import send_bodies
from polos.runtime import event_flow
from polos.testing import Stack, local_stack

from infra.metering.meter import Call, Meter

pytestmark = [pytest.mark.usefixtures("steady_requests"), pytest.mark.timeout(900)]
ROUNDS = 8
PROBE: list[str] = []  # the last lifecycle's requests, for the report


@pytest.fixture
def stack() -> Iterator[Stack]:
    flow_app.STARTS.clear()
    with local_stack(flow_app.app(), max_attempts=25) as opened:  # each crash point uses its own key
        yield opened


def _timers(call: Call) -> bool:
    """A request of the timers' sweep (every drain looks at its shards): not part of what is tested here."""
    text = repr(call.params.get("Key") or call.params.get("ExpressionAttributeValues") or {})
    return "timer#" in text or "timer-lease#" in text


# The local event source mapping's own requests: the worker's are the crash points.
MAPPING = {"ReceiveMessage", "DeleteMessageBatch", "GetQueueAttributes", "ChangeMessageVisibilityBatch"}


def _counted(call: Call) -> bool:
    return call.tag != "test" and not _timers(call) and call.operation not in MAPPING


def _deliver_highest_first(stack: Stack, meter: Meter, workflow_id: str) -> None:
    """The queued messages again one delivery at a time, highest ``sequence_id`` first (lower ids booked
    later take the turns of higher ones: the displaced wake up, find their turn moved and wait again)."""
    with meter.tag("test"):  # the test's own requests are not crash points; the worker's (drain) are
        held = held_messages(workflow_id)
    for seq in sorted(held, reverse=True):
        with meter.tag("test"):
            send_bodies(settings.get_settings().queue_url(workflow_id), [(held[seq], 0)])
        stack.drain()


def lifecycle(
    stack: Stack, topic: str, count: int, step: float, crash_at: int | None, *, reverse: bool = False
) -> tuple[list[str], int]:
    """Publish ``count`` events of a fresh key (``reverse``: delivered one at a time, highest id first),
    then drain and move the clock ``step`` s, ``ROUNDS`` times, crashing the worker after request
    ``crash_at``; the events and the requests made."""
    user = f"point-{crash_at}"
    meter = Meter()
    meter.attach(settings.dynamodb(), settings.sqs())
    with meter.tag("test"):  # the publish is not a crash point: the worker's requests are
        events = [e["id"] for e in stack.publish(topic, [{"data": {"user": user}}] * count)["events"]]
    meter.reset()
    meter.crash_after(crash_at, where=_counted)
    if reverse:
        _deliver_highest_first(stack, meter, "throttled")
    for _ in range(ROUNDS):
        stack.drain()  # a crashed invocation leaves its messages, delivered again (and its lease lapsed)
        stack.advance(seconds=step)
    made = len([call for call in meter.calls if _counted(call)])
    PROBE[:] = [f"{call.service}.{call.operation}" for call in meter.calls if _counted(call)]
    meter.detach()
    assert not meter.crash_pending, f"no crash happened at request {crash_at}"
    return events, made


def check_debounced(stack: Stack, events: list[str], user: str) -> None:
    assert [s["event"] for s in starts("debounced", user)] == [events[-1]], "one run, with the last event"
    mine = [run for run in stack.runs("debounced") if set(run["trigger"]["event_ids"]) & set(events)]
    assert [(run["trigger"]["event_ids"], run["status"]) for run in mine] == [([events[-1]], "completed")]
    assert not stack.dead_letters("debounced")


def check_throttled(stack: Stack, events: list[str], user: str) -> None:
    started = starts("throttled", user)
    assert set(s["event"] for s in started) == set(events), "every throttled event started"
    # A crash may cut another record of the same invocation between its step's call and its journal write:
    # that step is called again (at-least-once, DESIGN section 3). A run starts at its first call.
    first: dict[str, float] = {}
    for s in started:
        first[s["event"]] = min(s["at"], first.get(s["event"], s["at"]))
    times = sorted(first.values())
    limit, period = THROTTLE["limit"], THROTTLE["period"]
    crowded = [(a, b) for a, b in zip(times, times[limit:], strict=False) if b - a < period]
    assert not crowded, f"more than {limit} starts within {period} s: {crowded}"
    mine = [run for run in stack.runs("throttled") if set(run["trigger"]["event_ids"]) & set(events)]
    assert sorted(e for run in mine for e in run["trigger"]["event_ids"]) == sorted(events), "a run each"
    assert {run["status"] for run in mine} == {"completed"}
    assert not stack.dead_letters("throttled")


Check = Callable[[Stack, list[str], str], None]
# topic, events, seconds between rounds, check, the throttle window's shards, delivered highest id first
CASES: dict[str, tuple[str, int, float, Check, int, bool]] = {
    "debounce": (DEBOUNCE_TOPIC, 3, 11, check_debounced, 1, False),
    "throttle": (THROTTLE_TOPIC, 4, 5, check_throttled, 1, False),
    "throttle-reordered": (THROTTLE_TOPIC, 5, 5, check_throttled, 1, True),
    "throttle-sharded": (THROTTLE_TOPIC, 5, 5, check_throttled, 2, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_crash_after_any_request_of_debouncing_or_throttling_loses_and_doubles_nothing(
    stack: Stack, case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, count, step, check, shards, reverse = CASES[case]
    monkeypatch.setattr(event_flow, "shards", lambda limit: shards)
    # Every run tries shard 0 first (not its run id's hash): each lifecycle makes the same requests, so the
    # probe's count of them names the crash points of every other one.
    monkeypatch.setattr(event_flow, "_home", lambda run_id, count: 0)
    events, points = lifecycle(stack, topic, count, step, crash_at=None, reverse=reverse)
    probe_points = list(PROBE)
    check(stack, events, "point-None")
    assert points >= 6, points
    visited: list[Any] = []
    for n in crash_points(points):  # an even spread of them; every one under POLOS_SOAK=1 (make soak)
        events, _ = lifecycle(stack, topic, count, step, crash_at=n, reverse=reverse)
        check(stack, events, f"point-{n}")
        visited.append(n)
    with capsys.disabled():
        print(f"\n{case}: {points} worker requests, crashed after each of {visited}")
        print(f"requests: {probe_points}")

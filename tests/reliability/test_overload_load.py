"""The worker and the API under a 10% random throttle of every AWS call they make: a load of events to a
topic with 3 subscribers (one batched) through the local stack ends with every event run once per
subscriber, no run failed and no dead letter. Each call throttled is raised at once
(``InfrastructureThrottled``, as when botocore's retries are spent); a throttled publish is answered 503
and sent again with its ``Idempotency-Key``. The suite runs 30 events; ``make soak`` 1,000."""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import reliability_load_app as load_app
from helpers.throttle import throttle
from polos.errors import PolosAPIError
from polos.runtime import deferral
from polos.testing import Stack, local_stack
from reliability_support import SOAK

RATE = 0.1
PER_REQUEST = 10


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    # Deferred deliveries come back at once (their backoff has its own test): the drain need not sleep.
    monkeypatch.setattr(deferral, "delay_seconds", lambda deferred_before: 0)
    load_app.EFFECTS.clear()
    with local_stack(load_app.__name__) as stack:
        local = stack._local
        local.gateway._api = inside(local.gateway._api)
        for mapping in local.mappings:
            mapping._invoke = inside(mapping._invoke)
        yield stack


_inside = contextvars.ContextVar("inside_a_function", default=False)


def inside(invoke: Callable[..., Any]) -> Callable[..., Any]:
    """``invoke`` (a function's handler), marking the calls it makes as the function's own."""

    def marked(*args: Any, **kwargs: Any) -> Any:
        token = _inside.set(True)
        try:
            return invoke(*args, **kwargs)
        finally:
            _inside.reset(token)

    return marked


def ours(params: dict[str, Any]) -> bool:
    """Only the API's and the worker's calls: not the test harness's, not the event source mapping's
    (AWS's poller), not the timers function's sweep (drain() runs one; a throttled sweep is done again
    by the next minute's, and the load's workflows never wait)."""
    return _inside.get()


def publish_all(stack: Stack, events: int) -> list[str]:
    """Publish in requests of 10, each sent again with its key while it is answered 503 (as PolosClient
    does); the ids of the stored events."""
    published: list[str] = []
    for first in range(0, events, PER_REQUEST):
        batch = [{"data": {"n": n}} for n in range(first, min(events, first + PER_REQUEST))]
        for _ in range(50):
            try:
                answer = stack.publish(load_app.TOPIC, batch, idempotency_key=f"overload-{first}")
                break
            except PolosAPIError as exc:
                assert (exc.status, exc.error_type) == (503, "throttled"), exc
        else:
            raise AssertionError(f"request {first} was throttled 50 times in a row")
        published += [event["id"] for event in answer["events"]]
    return published


def run_under_throttle(stack: Stack, events: int) -> None:
    started = time.monotonic()
    with throttle(rate=RATE, seed=events, when=ours) as throttled:
        published = publish_all(stack, events)
        stack.drain(timeout=3000)
    seconds = time.monotonic() - started
    assert len(published) == len(set(published)) == events
    assert throttled.total > events / 2, "the throttle did not fire"

    effects = dict(load_app.EFFECTS)  # a step cut off before it was journaled may run again (at-least-once)
    for workflow_id in load_app.SINGLE:
        runs_of = Counter(ids[0] for (wf, _, ids) in effects if wf == workflow_id)
        assert runs_of == Counter(published), f"{workflow_id}: each event in exactly one run"
    batched = Counter(e for (wf, _, ids) in effects if wf == load_app.BATCHED for e in ids)
    assert batched == Counter(published), "each event in exactly one batch run"

    for workflow_id in (*load_app.SINGLE, load_app.BATCHED):
        statuses = Counter(run["status"] for run in stack.runs(workflow_id))
        assert set(statuses) == {"completed"}, f"{workflow_id}: {statuses}"
        assert stack.dead_letters(workflow_id) == [], workflow_id
    assert Counter(event["id"] for event in stack.events(load_app.TOPIC)) == Counter(published)
    print(
        f"\noverload: {events} events x 3 subscribers under a {RATE:.0%} throttle: {throttled.total} calls "
        f"throttled ({dict(throttled.seen.most_common(4))}), 0 runs failed, 0 dead letters, {seconds:.0f} s"
    )


def test_a_load_under_a_random_throttle_runs_every_event_once_per_subscriber(stack: Stack) -> None:
    run_under_throttle(stack, 30)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="1,000 events take ~10 min: make soak (POLOS_SOAK=1) runs it")
@pytest.mark.timeout(3600)
def test_a_1000_event_load_under_a_random_throttle(stack: Stack) -> None:
    run_under_throttle(stack, 1000)

"""Crash matrix: the process dies right after each AWS request of a publish, then of a run, in turn.

A crash is the meter's ``Crash`` (a ``BaseException``: nothing in the code under test catches it)
raised from a botocore ``after-call`` hook once the N-th request of the chosen function has taken effect.
Each crash point runs on a fresh stack. After a crashed publish the client retries with the same
``Idempotency-Key``; after a crashed run SQS delivers the messages again (released at once) and the
crashed attempt's lease lapses (the lease clock moves past it). Then: each event is stored once, each
subscriber ran it exactly once (runs API, and the step functions' own call counts), no journaled step ran
twice, and the events the runs published are stored once and ran once too. ``POLOS_SOAK=1`` publishes
more events per point: several write and send batches, and records of one invocation running concurrently.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import reliability_crash_app as crash_app
from polos.aws import settings
from polos.publish import events as event_store
from polos.testing import Stack as Reader
from reliability_support import SOAK, ShiftedClock

from bench.stack import MeteredStack, aws_in_process, polos_handlers
from infra.local.mapping import drain
from infra.local.stack import StackOptions
from infra.metering.meter import Call, Crash, Meter

pytestmark = [pytest.mark.timeout(1800 if SOAK else 600), pytest.mark.usefixtures("steady_requests")]

PUBLISH_EVENTS = 30 if SOAK else 3  # 30: two BatchWriteItem calls, three SendMessageBatch per subscriber
RUN_EVENTS = 10 if SOAK else 1  # 10: a full batch, records of one invocation running concurrently
OPTIONS = StackOptions(visibility_timeout=30, max_attempts=25)
SUBSCRIBERS = ("crash-batch", "crash-single")


class Matrix:
    """One crash point: the crash app on a fresh metered stack, and the guarantees for its events."""

    def __init__(self, metered: MeteredStack, clock: ShiftedClock) -> None:
        self.metered = metered
        self.meter = metered.meter
        self.clock = clock
        self.reader = Reader(metered.local, metered.api_key, skip_batch_windows=True)
        self.published: list[str] = []
        crash_app.EFFECTS.clear()  # run ids repeat across stacks: they derive from topic and sequence id
        crash_app.CALLS.clear()

    def events(self, count: int) -> list[dict[str, Any]]:
        return [{"data": {"n": n}, "event_type": "order"} for n in range(count)]

    def publish(self, events: list[dict[str, Any]], key: str) -> list[str]:
        answer = self.metered.publish(crash_app.TOPIC, events, key)
        assert len(answer["events"]) == len(events)
        return [event["id"] for event in answer["events"]]

    def drain(self) -> None:
        def lapse(delivery: Any) -> None:
            if delivery.failed:  # redelivered at once: let the crashed attempt's lease lapse first
                self.clock.advance(OPTIONS.lease_seconds + 1)

        drain(self.metered.mappings, redeliver_failures=True, on_delivery=lapse, timeout=600)

    def check(self, event_ids: list[str]) -> None:
        """Each event stored once and run once by each subscriber; no journaled step ran twice."""
        self.published += event_ids
        stored = [event["id"] for event in self.reader.events(crash_app.TOPIC)]
        assert Counter(stored) == Counter(self.published), "each accepted event is stored exactly once"
        notified = [event["data"]["order"] for event in self.reader.events(crash_app.NOTIFIED_TOPIC)]
        assert Counter(notified) == Counter(self.published), "publish_event stored its event exactly once"
        effects = crash_app.EFFECTS
        journaled = self._journaled()
        again = [(called, at) for called, at in crash_app.CALLS if at > journaled.get(called[1:3], at)]
        assert not again, f"a step ran again after it was journaled: {again[:3]}"
        if len(event_ids) == 1:
            # One record per invocation: a crash can never cut a step between its call and its journal
            # write (the write is the next request), so every step function ran exactly once. With records
            # running concurrently, a crash in one may stop another after its step ran but before the
            # write: that step runs again (at-least-once, DESIGN section 3); the check above still holds.
            assert set(effects.values()) == {1}, f"a step ran twice: {effects.most_common(3)}"
        for workflow_id, keys in (("crash-single", ("charge", "ship")), ("crash-notified", ("mail",))):
            for key in keys:
                done = Counter(ids for (wf, _, k, ids) in effects if wf == workflow_id and k == key)
                assert done == Counter((e,) for e in self.published), (
                    f"{workflow_id}.{key} ran once per event"
                )
        for key in ("load", "report"):
            batched = Counter(
                e for (wf, _, k, ids) in effects if wf == "crash-batch" and k == key for e in ids
            )
            assert batched == Counter(self.published), f"crash-batch.{key}: each event in exactly one batch"
        for url in self.metered.local.urls.values():
            dlq = settings.sqs().receive_message(QueueUrl=url + "-dlq", WaitTimeSeconds=0)
            assert not dlq.get("Messages"), "nothing dead-lettered"
        self._check_runs()

    def _journaled(self) -> dict[tuple[str, str], float]:
        """When each step was journaled (its first completed step item written), by (run id, step key)."""
        written: dict[tuple[str, str], float] = {}
        for call in self.meter.select(service="dynamodb"):
            if not call.ok:
                continue
            item = call.params.get("Item", {})
            sk = item.get("sk", {}).get("S", "")
            completed = item.get("status", {}).get("S") == "completed"
            if call.operation == "PutItem" and sk.startswith("step#") and completed:
                step = (item["pk"]["S"].removeprefix("run#"), sk.removeprefix("step#"))
                written.setdefault(step, call.started + call.seconds)
            kept = call.params.get("ExpressionAttributeNames", {}).get("#step", "")
            if call.operation == "UpdateItem" and kept.startswith("step#"):  # the last step, with the outcome
                step = (call.params["Key"]["pk"]["S"].removeprefix("run#"), kept.removeprefix("step#"))
                written.setdefault(step, call.started + call.seconds)
        return written

    def _check_runs(self) -> None:
        """Through the runs API: one completed run per event and subscriber, each step called once."""
        for workflow_id in ("crash-single", "crash-batch", "crash-notified"):
            runs = self.reader.runs(workflow_id)
            assert {run["status"] for run in runs} == {"completed"}, workflow_id
            triggered = Counter(e for run in runs for e in run["trigger"]["event_ids"])
            if workflow_id == "crash-notified":  # triggered by the events the runs published
                assert len(runs) == len(self.published) and set(triggered.values()) == {1}
            else:
                assert triggered == Counter(self.published), f"{workflow_id}: one run per event"
            assert all(step["attempts"] == 1 for run in runs for step in run["steps"]), workflow_id


class Matrices:
    """Makes a fresh stack (and so fresh state) for each crash point, closing the one before."""

    def __init__(self, state_dir: Path, clock: ShiftedClock) -> None:
        self._state_dir = state_dir
        self._clock = clock
        self._current: Matrix | None = None
        self._made = 0

    def new(self) -> Matrix:
        self.close()
        self._made += 1
        state = self._state_dir / str(self._made)
        state.mkdir()
        metered = MeteredStack(
            crash_app.app(), state, Meter(), polos_handlers, app_target=crash_app.__name__, options=OPTIONS
        )
        self._current = Matrix(metered, self._clock)
        return self._current

    def close(self) -> None:
        if self._current is not None:
            self._current.reader.close()
            self._current.metered.close()
            self._current = None


@pytest.fixture
def matrices(
    tmp_path: Path, lease_clock: ShiftedClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Matrices]:
    # A crash after a sequence id reservation leaves a gap; nothing is in flight when the matrix reads,
    # so gaps count as settled at once (otherwise each listing waits GAP_SETTLE_SECONDS for them).
    monkeypatch.setattr(event_store, "GAP_SETTLE_SECONDS", -1)
    with aws_in_process():
        made = Matrices(tmp_path, lease_clock)
        try:
            yield made
        finally:
            made.close()


def _in(function: str) -> Callable[[Call], bool]:
    return lambda call: (call.tag or "").startswith(function + ":")


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_crash_after_each_aws_request_of_a_publish(
    matrices: Matrices, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = matrices.new()
    events = probe.publish(probe.events(PUBLISH_EVENTS), "probe")
    points = [f"{c.service}.{c.operation}" for c in probe.meter.calls if _in("ApiFunction")(c)]
    probe.drain()
    probe.check(events)
    assert len(points) >= 4  # reserve, claim, write, send, complete at least
    for n, point in enumerate(points, start=1):
        matrix = matrices.new()
        events_sent, key = matrix.events(PUBLISH_EVENTS), f"crash-{n}"
        matrix.meter.crash_after(n, where=_in("ApiFunction"))
        with pytest.raises(Crash):
            matrix.publish(events_sent, key)
        assert not matrix.meter.crash_pending, f"no crash at point {n} ({point})"
        first = matrix.metered.publish(crash_app.TOPIC, events_sent, key)  # the client's retry, same key
        again = matrix.metered.publish(crash_app.TOPIC, events_sent, key)
        assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True), "same answer verbatim"
        matrix.drain()
        matrix.check([event["id"] for event in first["events"]])
    _report(
        capsys, f"crash matrix (publish of {PUBLISH_EVENTS} events): {len(points)} crash points: {points}"
    )


def test_crash_after_each_aws_request_of_a_run(
    matrices: Matrices, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = matrices.new()
    events = probe.publish(probe.events(RUN_EVENTS), "probe")
    probe.meter.reset()
    probe.drain()
    points = [f"{c.service}.{c.operation}" for c in probe.meter.calls if _in("WorkerFunction")(c)]
    probe.check(events)
    assert len(points) >= 3 * 3  # three runs of at least: read, take the lease, journal, finish
    for n, point in enumerate(points, start=1):
        matrix = matrices.new()
        events = matrix.publish(matrix.events(RUN_EVENTS), f"run-{n}")
        matrix.meter.crash_after(n, where=_in("WorkerFunction"))
        matrix.drain()
        assert not matrix.meter.crash_pending, f"no crash at point {n} ({point})"
        matrix.check(events)
    _report(capsys, f"crash matrix (runs of {RUN_EVENTS} event(s)): {len(points)} crash points: {points}")


def _membership_write(call: Call) -> bool:
    """A write of a batch run's creation: its claims of the events, its run item (naming its members)."""
    return _in("WorkerFunction")(call) and call.operation in ("BatchWriteItem", "PutItem")


def test_crash_after_each_membership_write_of_a_batch(
    matrices: Matrices, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch run's anchor claim, run item and other claims: the process dies after each."""
    count = max(RUN_EVENTS, 3)
    probe = matrices.new()
    events = probe.publish(probe.events(count), "probe")
    probe.meter.reset()
    probe.drain()
    points = [c for c in probe.meter.calls if _membership_write(c)]
    probe.check(events)
    assert len(points) >= count + 1  # a claim per event, the run item (its steps are kept in it)
    for n in range(1, len(points) + 1):
        matrix = matrices.new()
        events = matrix.publish(matrix.events(count), f"claim-{n}")
        matrix.meter.crash_after(n, where=_membership_write)
        matrix.drain()
        assert not matrix.meter.crash_pending, f"no crash at membership write {n}"
        matrix.check(events)
    _report(capsys, f"crash matrix (batch of {count}, each membership write): {len(points)} points")

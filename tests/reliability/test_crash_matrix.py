"""Crash matrix: the process dies right after each AWS request of a publish, then of a run, in turn.

A crash is :class:`bench.meter.Crash` (a ``BaseException``: nothing in the code under test catches it)
raised from a botocore ``after-call`` hook once the N-th request of the chosen function has taken effect.
After a crashed publish the client retries with the same ``Idempotency-Key``; after a crashed run SQS
delivers the messages again (released at once) and the crashed attempt's lease lapses (the lease clock
moves past it). Then, for every crash point: each event is stored once, each subscriber ran it exactly
once (runs, and the step functions' own call counts), no journaled step ran twice, and the events the
runs published are stored once and ran once too. ``POLOS_SOAK=1`` publishes more events per point.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import reliability_crash_app as crash_app
from polos import settings
from polos.testing import Stack as Reader
from reliability_support import SOAK, ShiftedClock

from bench.meter import Call, Crash, Meter
from bench.stack import MeteredStack, aws_in_process, polos_handlers
from infra.local.mapping import drain
from infra.local.stack import StackOptions

pytestmark = pytest.mark.timeout(1800 if SOAK else 600)

PUBLISH_EVENTS = 30 if SOAK else 3  # 30: two BatchWriteItem calls, three SendMessageBatch per subscriber
RUN_EVENTS = 10 if SOAK else 1  # 10: a full batch, records of one invocation running concurrently
OPTIONS = StackOptions(visibility_timeout=30, max_receive_count=50)
SUBSCRIBERS = ("crash-batch", "crash-single")


class Matrix:
    """The crash app on one metered stack; checks the guarantees for the events of each crash point."""

    def __init__(self, metered: MeteredStack, clock: ShiftedClock) -> None:
        self.metered = metered
        self.clock = clock
        self.reader = Reader(metered.local, metered.api_key, skip_batch_windows=True)
        self.published: list[str] = []
        self.counter = 0

    def events(self, count: int) -> list[dict[str, Any]]:
        self.counter += 1
        return [{"data": {"point": self.counter, "n": n}, "event_type": "order"} for n in range(count)]

    def publish(self, events: list[dict[str, Any]], key: str) -> list[str]:
        answer = self.metered.publish(crash_app.TOPIC, events, key)
        assert len(answer["events"]) == len(events)
        return [event["id"] for event in answer["events"]]

    def drain(self) -> None:
        def lapse(delivery: Any) -> None:
            if delivery.failed:  # redelivered at once: let the crashed attempt's lease lapse first
                self.clock.advance(OPTIONS.lease_seconds + 1)

        drain(self.metered.mappings, redeliver_failures=True, on_delivery=lapse, timeout=300)

    def check(self, event_ids: list[str]) -> None:
        """The guarantees, for the events of one crash point (and the running totals)."""
        self.published += event_ids
        stored = [event["id"] for event in self.reader.events(crash_app.TOPIC)]
        assert Counter(stored) == Counter(self.published), "each accepted event is stored exactly once"
        notified = [event["data"]["order"] for event in self.reader.events(crash_app.NOTIFIED_TOPIC)]
        assert Counter(notified) == Counter(self.published), "publish_event stored its event exactly once"
        effects = crash_app.EFFECTS
        assert set(effects.values()) == {1}, f"a journaled step ran twice: {effects.most_common(3)}"
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

    def check_runs(self) -> None:
        """Through the runs API, once per matrix: one completed run per event and subscriber."""
        for workflow_id, expected in (
            ("crash-single", self.published),
            ("crash-batch", self.published),
            ("crash-notified", self.published),
        ):
            runs = self.reader.runs(workflow_id)
            assert {run["status"] for run in runs} == {"completed"}, workflow_id
            triggered = Counter(e for run in runs for e in run["trigger"]["event_ids"])
            if workflow_id == "crash-notified":  # triggered by the events the runs published
                assert len(runs) == len(expected) and set(triggered.values()) == {1}
            else:
                assert triggered == Counter(expected), f"{workflow_id}: one run per event"
            assert all(step["attempts"] == 1 for run in runs for step in run["steps"]), workflow_id


@pytest.fixture
def matrix(tmp_path: Path, lease_clock: ShiftedClock) -> Iterator[Matrix]:
    crash_app.EFFECTS.clear()
    with aws_in_process():
        meter = Meter()
        with MeteredStack(
            crash_app.app(), tmp_path, meter, polos_handlers, app_target=crash_app.__name__, options=OPTIONS
        ) as metered:
            subject = Matrix(metered, lease_clock)
            yield subject
            subject.reader.close()


def _in(function: str) -> Callable[[Call], bool]:
    return lambda call: (call.tag or "").startswith(function + ":")


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_crash_after_each_aws_request_of_a_publish(
    matrix: Matrix, capsys: pytest.CaptureFixture[str]
) -> None:
    meter = matrix.metered.meter
    warm_up = matrix.publish(matrix.events(1), "warm-up")  # authorizer cached, handlers imported
    matrix.drain()
    matrix.check(warm_up)
    meter.reset()
    probe = matrix.publish(matrix.events(PUBLISH_EVENTS), "probe")
    points = [f"{c.service}.{c.operation}" for c in meter.calls if _in("ApiFunction")(c)]
    matrix.drain()
    matrix.check(probe)
    assert len(points) >= 4  # reserve, claim, write, send, complete at least
    for n, point in enumerate(points, start=1):
        events, key = matrix.events(PUBLISH_EVENTS), f"crash-{n}"
        meter.crash_after(n, where=_in("ApiFunction"))
        with pytest.raises(Crash):
            matrix.publish(events, key)
        assert not meter.crash_pending, f"no crash at point {n} ({point})"
        first = matrix.metered.publish(crash_app.TOPIC, events, key)  # the client's retry, same key
        again = matrix.metered.publish(crash_app.TOPIC, events, key)
        assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True), "same answer verbatim"
        matrix.drain()
        matrix.check([event["id"] for event in first["events"]])
    matrix.check_runs()
    _report(
        capsys, f"crash matrix (publish of {PUBLISH_EVENTS} events): {len(points)} crash points: {points}"
    )


def test_crash_after_each_aws_request_of_a_run(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    meter = matrix.metered.meter
    warm_up = matrix.publish(matrix.events(1), "warm-up")  # authorizer cached, handlers imported
    matrix.drain()
    matrix.check(warm_up)
    probe = matrix.publish(matrix.events(RUN_EVENTS), "probe")
    meter.reset()
    matrix.drain()
    points = [f"{c.service}.{c.operation}" for c in meter.calls if _in("WorkerFunction")(c)]
    matrix.check(probe)
    assert len(points) >= 3 * 3  # three runs of at least: read, take the lease, journal, finish
    for n, point in enumerate(points, start=1):
        events = matrix.publish(matrix.events(RUN_EVENTS), f"run-{n}")
        meter.crash_after(n, where=_in("WorkerFunction"))
        matrix.drain()
        assert not meter.crash_pending, f"no crash at point {n} ({point})"
        matrix.check(events)
    matrix.check_runs()
    _report(capsys, f"crash matrix (runs of {RUN_EVENTS} event(s)): {len(points)} crash points: {points}")

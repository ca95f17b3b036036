"""The fair baseline honours the client's ``Idempotency-Key`` as a Powertools user would (issue 26)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bench import cost
from bench.stack import MeteredStack, aws_in_process
from bench.workload import APP_TARGET, app, sample_event
from infra.metering import prices
from infra.metering.meter import Meter

TOPIC = cost.TARGET.shape.topic


def _stack(system: str) -> Iterator[MeteredStack]:
    with tempfile.TemporaryDirectory() as tmp, aws_in_process():
        meter = Meter(shadow=boto3.client("dynamodb", region_name=prices.REGION))
        with MeteredStack(
            app(), Path(tmp), meter, cost.HANDLERS[system], app_target=APP_TARGET, options=cost.OPTIONS
        ) as stack:
            yield stack


@pytest.fixture
def fair() -> Iterator[MeteredStack]:
    yield from _stack("powertools")


@pytest.fixture
def keyless() -> Iterator[MeteredStack]:
    yield from _stack(cost.KEYLESS)


def _workflows() -> list[str]:
    return cost.TARGET.shape.workflow_ids()


def test_a_replay_under_the_same_key_answers_the_first_answer_and_stores_and_sends_nothing(
    fair: MeteredStack,
) -> None:
    events = [sample_event(n, cost.TARGET.data) for n in range(3)]
    first = fair.publish(TOPIC, events, idempotency_key="k-1")
    assert fair.drain(_workflows()) == 3
    again = fair.publish(TOPIC, events, idempotency_key="k-1")
    assert again == first
    assert fair.drain(_workflows()) == 0
    other = fair.request(
        "POST", "/api/v1/events/publish", {"topic": TOPIC, "events": events[:1]}, {"Idempotency-Key": "k-1"}
    )
    assert other.status == 409


def test_the_baseline_ignoring_the_key_stores_and_sends_a_replay_again(keyless: MeteredStack) -> None:
    events = [sample_event(n, cost.TARGET.data) for n in range(3)]
    first = keyless.publish(TOPIC, events, idempotency_key="k-1")
    again = keyless.publish(TOPIC, events, idempotency_key="k-1")
    assert again != first  # new event ids
    assert keyless.drain(_workflows()) == 6

"""``polos.runtime.partial_batch``: records run concurrently; those whose handler raised are reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from polos.runtime.partial_batch import process_partial_batch


def sqs_event(*ids: str) -> dict[str, Any]:
    return {"Records": [{"messageId": message_id, "body": message_id} for message_id in ids]}


def failing_on(*bad: str) -> Any:
    seen: list[str] = []

    async def handler(record: dict[str, Any]) -> None:
        seen.append(record["messageId"])
        if record["messageId"] in bad:
            raise RuntimeError(f"record {record['messageId']} failed")

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def failures(answer: Any) -> list[str]:
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def test_a_raising_record_is_reported_and_the_others_are_acknowledged() -> None:
    handler = failing_on("b")
    answer = process_partial_batch(sqs_event("a", "b", "c"), handler)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert sorted(handler.seen) == ["a", "b", "c"]


def test_all_failing_reports_all_in_record_order_and_does_not_raise() -> None:
    ids = ("m-3", "m-1", "m-2", "m-0")
    assert failures(process_partial_batch(sqs_event(*ids), failing_on(*ids))) == list(ids)


def test_failures_keep_the_order_of_the_records_not_of_completion() -> None:
    """The record that fails first (it does not wait) is listed after the one before it in the event."""
    release = asyncio.Event()

    async def handler(record: dict[str, Any]) -> None:
        if record["messageId"] == "first":
            await asyncio.wait_for(release.wait(), timeout=5)
            raise RuntimeError("first fails last")
        release.set()
        raise RuntimeError("second fails first")

    assert failures(process_partial_batch(sqs_event("first", "second"), handler)) == ["first", "second"]


def test_records_run_concurrently() -> None:
    """Each record waits until every record has started: run one after the other, none would finish."""
    started: set[str] = set()
    everyone = asyncio.Event()

    async def handler(record: dict[str, Any]) -> None:
        started.add(record["messageId"])
        if len(started) == 2:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout=5)

    assert process_partial_batch(sqs_event("a", "b"), handler) == {"batchItemFailures": []}
    assert started == {"a", "b"}


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"Records": None}])
def test_no_records_answer_no_failures(event: dict[str, Any]) -> None:
    assert process_partial_batch(event, failing_on()) == {"batchItemFailures": []}


@pytest.mark.parametrize("record", [{"body": "x"}, {"messageId": ""}, {"messageId": 7}, "m-1"])
def test_a_record_without_message_id_is_refused_before_any_record_runs(record: Any) -> None:
    handler = failing_on()
    with pytest.raises(ValueError, match="SQS record 1 has no messageId"):
        process_partial_batch({"Records": [{"messageId": "ok"}, record]}, handler)
    assert handler.seen == []


def test_records_that_are_not_a_list_are_refused() -> None:
    with pytest.raises(ValueError, match="Records must be a list"):
        process_partial_batch({"Records": {"messageId": "a"}}, failing_on())

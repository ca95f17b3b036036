"""Logs carry the run's keys on every line (also for runs in parallel); metrics go out as EMF."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.stack import provision
from helpers.worker import Pump, publish
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.runtime.runs import event_run_id

from infra.local.functions import LocalContext, load_handler
from infra.model import WORKER_FUNCTION

failures_left: dict[str, int] = {}


def flaky(name: str) -> str:
    logging.getLogger("polos.tests").info("step body of %s", name)
    if failures_left.get(name, 0) > 0:
        failures_left[name] -= 1
        raise ConnectionError("try again")
    return name


@workflow(id="wo-single", trigger_on_event="wo/single")
async def single(ctx: WorkflowContext, payload: EventPayload) -> str:
    return str(await ctx.step.run("flaky", flaky, f"single-{payload.sequence_id}", base_delay=0, max_delay=0))


@workflow(id="wo-batch", trigger_on_event="wo/batch", batch_size=10, batch_timeout_seconds=1)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> int:
    return len(payload.events)


@workflow(id="wo-fail", trigger_on_event="wo/fail")
async def fail(ctx: WorkflowContext, payload: EventPayload) -> None:
    from polos import NonRetryableError

    raise NonRetryableError("no")


APP = App("worker-observability", [single, batch, fail])


@pytest.fixture
def pump(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pump:
    failures_left.clear()
    return Pump(APP, provision(APP, tmp_path, monkeypatch))


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the Powertools logger writes (its own formatter, so the context keys are in)."""
    polos_logger = logging.getLogger("polos")
    formatter = next(handler.formatter for handler in polos_logger.handlers if handler.formatter is not None)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    polos_logger.addHandler(handler)  # the step's own logger, "polos.tests", propagates to it
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    polos_logger.removeHandler(handler)


def emf_documents(text: str) -> list[dict[str, float]]:
    """Each EMF document's metric totals (one value is written as a number, several as a list)."""
    documents = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [
        {
            metric["Name"]: sum(value) if isinstance(value := doc[metric["Name"]], list) else value
            for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        }
        | {"namespace": doc["_aws"]["CloudWatchMetrics"][0]["Namespace"]}
        for doc in documents
    ]


def test_concurrent_runs_log_their_own_keys_on_every_line(
    pump: Pump, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    events = publish("wo/single", {}, {}, {})
    failures_left[f"single-{events[1].sequence_id}"] = 1
    delivery = pump.once("wo-single")
    assert delivery is not None and len(delivery.messages) == 3 and not delivery.failed
    by_run = {event_run_id("wo-single", e.topic, e.sequence_id): e.id for e in events}
    lines = log_lines()
    run_lines = [line for line in lines if "run_id" in line]
    assert {line["run_id"] for line in run_lines} == set(by_run)
    for line in run_lines:
        assert line["workflow_id"] == "wo-single"
        assert line["event_id"] == by_run[line["run_id"]], line
    step_bodies = [line for line in lines if line["message"].startswith("step body of")]
    assert len(step_bodies) == 4 and all("run_id" in line for line in step_bodies)
    [retry] = [line for line in lines if line["message"] == "step call failed; retrying"]
    assert retry["step_key"] == "flaky" and retry["event_id"] == events[1].id


LAMBDA_CONTEXT_KEYS = {
    "cold_start",
    "function_name",
    "function_arn",
    "function_memory_size",
    "function_request_id",
}


def test_a_run_logs_one_compact_line_at_debug_none_at_info_through_the_lambda_handler(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    handler = load_handler(WORKER_FUNCTION)
    monkeypatch.setattr(sys.modules[handler.__module__], "app", lambda: APP)
    pump = Pump(
        APP,
        provision(APP, tmp_path, monkeypatch),
        lambda event: handler(event, LocalContext(WORKER_FUNCTION)),
    )
    single_events = publish("wo/single", {}, {})
    publish("wo/batch", *[{"n": n} for n in range(3)])
    polos_logger = logging.getLogger("polos")
    level = polos_logger.level
    polos_logger.setLevel(logging.DEBUG)  # every line written, each with its level
    try:
        assert pump.once("wo-single") is not None and pump.once("wo-batch") is not None
    finally:
        polos_logger.setLevel(level)
    lines = log_lines()
    assert not [line for line in lines if LAMBDA_CONTEXT_KEYS & line.keys()]
    info = [line for line in lines if line["level"] == "INFO" and "step body" not in line["message"]]
    # CloudWatch Logs bills every line: a run that completes writes none at the deployed level (INFO); its
    # outcome is on the run item and in RunsCompleted, its failures at WARNING/ERROR (issue 26).
    assert [line for line in info if "run_id" in line] == []
    debug = [line for line in lines if line["level"] == "DEBUG" and line["message"] == "run completed"]
    assert len(debug) == 3
    by_event = {line.get("event_id"): line for line in debug if line.get("workflow_id") == "wo-single"}
    assert set(by_event) == {event.id for event in single_events}
    [batch_line] = [line for line in debug if line.get("workflow_id") == "wo-batch"]
    assert batch_line["event_count"] == 3 and "event_ids" not in batch_line


def test_one_emf_document_per_invocation_counts_runs_retries_and_batch_sizes(
    pump: Pump, capsys: pytest.CaptureFixture[str]
) -> None:
    events = publish("wo/single", {}, {})
    failures_left[f"single-{events[0].sequence_id}"] = 1
    publish("wo/batch", *[{"n": n} for n in range(4)])
    publish("wo/fail", {})
    capsys.readouterr()
    for workflow_id in ("wo-single", "wo-batch", "wo-fail"):
        pump.once(workflow_id)
    single_doc, batch_doc, fail_doc = emf_documents(capsys.readouterr().out)
    # (Metrics of other parts, e.g. the publish side's, may share the document.)
    assert (
        single_doc.items()
        >= {"namespace": "Polos", "RunsStarted": 2, "RunsCompleted": 2, "StepRetries": 1}.items()
    )
    assert batch_doc.items() >= {"BatchSize": 4, "RunsStarted": 1, "RunsCompleted": 1}.items()
    assert fail_doc.items() >= {"RunsStarted": 1, "RunsFailed": 1}.items()
    assert "RunsCompleted" not in fail_doc and "RunsFailed" not in single_doc


def test_an_unexpected_error_is_logged_once_with_its_traceback_and_the_records_are_left(
    pump: Pump, log_lines: Callable[[], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError
    from polos.publish.fanout import deliver, event_messages
    from polos.runtime.journal import Journal

    def throttled(*args: Any, **kwargs: Any) -> Any:
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed"}}
        raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "acquire", throttled)
    first, second = publish("wo/single", {}, {})
    deliver(event_messages("wo/single", [first]))  # a duplicate of the first: the same run, in one delivery
    delivery = pump.once("wo-single", redeliver=False)
    assert delivery is not None and len(delivery.messages) == 3
    assert len(delivery.failed) == 3  # every record is left for SQS to deliver again
    errors = [line for line in log_lines() if line["level"] == "ERROR"]
    # One line per run (the duplicate shares its run's), each naming the error, with its traceback.
    assert [line["message"] for line in errors] == [
        "unexpected error; the run's records are left for SQS to deliver again"
    ] * 2
    assert {line["run_id"] for line in errors} == {
        event_run_id("wo-single", event.topic, event.sequence_id) for event in (first, second)
    }
    assert all("ThrottlingException" in line["exception"] for line in errors)
    assert all("Traceback" in line["exception"] for line in errors)

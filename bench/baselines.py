"""The two baselines the cost benchmark runs beside Polos, doing the same work per event.

(a) ``PowertoolsSystem`` — the fair baseline: what a competent engineer writes by hand with Powertools for
    the same job. The publisher honours the client's ``Idempotency-Key`` with Powertools' ``@idempotent``
    on its handler (a conditional PutItem before, an UpdateItem with the answer after; kept 24 hours, like
    Polos's key records; the same key with another body is a ``409``), stores the request's events
    (BatchWriteItem, 25 per call), each compressed with zlib when that makes it smaller (as Polos stores
    large event data), and sends them to each subscriber's queue (SendMessageBatch, 10 per call). The
    worker runs Powertools' ``AsyncBatchProcessor``, so a delivery's records run concurrently (as Polos
    runs them), and makes every step exactly-once with ``@idempotent_function`` on a
    ``DynamoDBPersistenceLayer`` (one record per step: a conditional PutItem before, an UpdateItem after),
    its records kept for the retention period like Polos's journal. A batch workflow runs its steps once
    per delivered batch. It logs and measures what Polos does: Powertools'
    Logger with the Lambda context, one INFO line per API request and per publish, a run's completion at
    DEBUG (Polos's level for it); Powertools' Metrics, ``EventsPublished``, ``RunsStarted`` and
    ``RunsCompleted`` under the ``service`` dimension, one EMF document per invocation.
    What it does not do (docs/benchmarks.md): check API keys, number events per topic, finish a publish
    that stopped midway (its key's record blocks retries until the handler's timeout, then the retry runs
    again from scratch: new event ids, the first attempt's events stored and delivered twice), keep a
    redelivered batch's membership, list runs, wait durably.
(b) ``NaiveSystem`` — one PutItem and one SendMessage per event per subscriber; the worker calls the step
    functions with no journal at all (a retry re-runs every step).

Neither checks API keys (their API Gateway requests are still billed). Both keep what they store as
long as Polos does (the retention period). (b) logs and measures nothing of its own (Lambda's
START/END/REPORT lines are counted for every system).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from polos.aws import settings

from bench.workload import SHAPE_OF, Shape, effect
from infra.model import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

BATCH_WRITE_MAX = 25
KEY_RETENTION_SECONDS = 24 * 3600  # how long an Idempotency-Key is honoured: as long as Polos keeps one
SEND_BATCH_MAX = 10

logger = Logger(service="baseline")
metrics = Metrics(namespace="Baseline", service="baseline")


def _stored_body(event: dict[str, Any]) -> dict[str, Any]:
    """The event as stored: its JSON, zlib-compressed when that is smaller (binary ``B``)."""
    raw = json.dumps(event, separators=(",", ":")).encode()
    packed = zlib.compress(raw)
    return {"B": packed} if len(packed) < len(raw) else {"S": raw.decode()}


def _expires_at() -> dict[str, str]:
    """The TTL attribute's value: kept for the retention period, like Polos's events."""
    return {"N": str(int(time.time()) + settings.get_settings().retention_seconds)}


def _answer(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"events": events}),
    }


def _request(event: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    body = json.loads(event["body"])
    stored = [{"id": "evt_" + uuid.uuid4().hex, "topic": body["topic"], **e} for e in body["events"]]
    return body["topic"], stored


def _subscribers(topic: str) -> list[str]:
    return sorted(wf_id for wf_id, shape in SHAPE_OF.items() if shape.topic == topic)


def _body(workflow_id: str, event: dict[str, Any]) -> str:
    return json.dumps({"workflow_id": workflow_id, "event": event}, separators=(",", ":"))


def _shape_of_records(event: dict[str, Any]) -> tuple[str, Shape, list[dict[str, Any]]]:
    records = event["Records"]
    bodies = [json.loads(record["body"]) for record in records]
    workflow_id = bodies[0]["workflow_id"]
    return workflow_id, SHAPE_OF[workflow_id], bodies


def _store_and_send(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The publish: store the request's events, send them to each subscriber's queue, answer their ids."""
    topic, events = _request(event)
    table = settings.get_settings().events_table
    for start in range(0, len(events), BATCH_WRITE_MAX):
        pending: dict[str, Any] = {
            table: [
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {"S": topic},
                            "sk": {"S": e["id"]},
                            "body": _stored_body(e),
                            TTL_ATTRIBUTE: _expires_at(),
                        }
                    }
                }
                for e in events[start : start + BATCH_WRITE_MAX]
            ]
        }
        while pending:
            pending = settings.dynamodb().batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    for workflow_id in _subscribers(topic):
        for start in range(0, len(events), SEND_BATCH_MAX):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": _body(workflow_id, e)}
                for i, e in enumerate(events[start : start + SEND_BATCH_MAX])
            ]
            failed = (
                settings.sqs()
                .send_message_batch(QueueUrl=settings.get_settings().queue_url(workflow_id), Entries=entries)
                .get("Failed")
            )
            if failed:
                raise RuntimeError(f"SendMessageBatch failed for {failed}")
    logger.info("published", extra={"topic": topic, "events": len(events)})
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=len(events))
    return _answer([{"id": e["id"]} for e in events])


def _records() -> DynamoDBPersistenceLayer:
    """A Powertools persistence layer on the idempotency table (one per decorated function: each
    configures its own)."""
    return DynamoDBPersistenceLayer(
        table_name=settings.get_settings().idempotency_table,
        key_attr="pk",
        expiry_attr=TTL_ATTRIBUTE,  # the table's TTL attribute, so records expire like Polos's
        boto3_client=settings.dynamodb(),
    )


class PowertoolsSystem:
    """Baseline (a): Powertools idempotency on the publish handler and per step, and its batch processor.

    ``honour_idempotency_key=False`` is the same baseline ignoring the client's ``Idempotency-Key``
    (printed beside the targets, to show what honouring it costs)."""

    def __init__(self, *, honour_idempotency_key: bool = True) -> None:
        # Records kept for the retention period, like Polos's journal (Powertools' default is one hour).
        self._config = IdempotencyConfig(expires_after_seconds=settings.get_settings().retention_seconds)
        self._step = idempotent_function(
            data_keyword_argument="task", persistence_store=_records(), config=self._config
        )(self._run_step)
        self._publish = _store_and_send
        if honour_idempotency_key:
            keyed = IdempotencyConfig(
                event_key_jmespath='headers."idempotency-key"',
                payload_validation_jmespath="body",  # the same key with another body is refused
                expires_after_seconds=KEY_RETENTION_SECONDS,
            )
            self._publish = idempotent(persistence_store=_records(), config=keyed)(_store_and_send)

    @staticmethod
    def _run_step(task: dict[str, Any]) -> dict[str, Any]:
        return effect(task["step"], task["events"])

    def api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        answer: dict[str, Any] = metrics.log_metrics(logger.inject_lambda_context(self._api))(event, context)
        logger.info("request", extra={"path": event.get("rawPath"), "status": answer["statusCode"]})
        return answer

    def _api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self._publish(event, context)
        except (IdempotencyValidationError, IdempotencyAlreadyInProgressError) as exc:
            return {"statusCode": 409, "body": json.dumps({"error": type(exc).__name__})}
        return answer

    def worker(self, event: dict[str, Any], context: Any) -> Any:
        return metrics.log_metrics(logger.inject_lambda_context(self._worker))(event, context)

    def _completed(self, workflow_id: str, events: int) -> None:
        metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RunsCompleted", unit=MetricUnit.Count, value=1)
        logger.debug("run completed", extra={"workflow_id": workflow_id, "events": events})

    def _worker(self, event: dict[str, Any], context: Any) -> Any:
        self._config.register_lambda_context(context)
        workflow_id, shape, bodies = _shape_of_records(event)
        if shape.batch:  # one run of the steps for the delivered batch
            ids = sorted(body["event"]["id"] for body in bodies)
            for step in range(shape.steps):
                self._step(task={"workflow": workflow_id, "events": ids, "step": step})
            self._completed(workflow_id, len(ids))
            return {"batchItemFailures": []}

        async def record_handler(record: SQSRecord) -> None:
            body = json.loads(record.body)
            for step in range(shape.steps):
                task = {"workflow": workflow_id, "events": [body["event"]["id"]], "step": step}
                await asyncio.to_thread(self._step, task=task)
            self._completed(workflow_id, 1)

        processor = AsyncBatchProcessor(event_type=EventType.SQS)
        return async_process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )


class NaiveSystem:
    """Baseline (b): one PutItem and one SendMessage per event per subscriber; steps run unjournaled."""

    def api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        topic, events = _request(event)
        table = settings.get_settings().events_table
        for workflow_id in _subscribers(topic):
            for e in events:
                settings.dynamodb().put_item(
                    TableName=table,
                    Item={
                        "pk": {"S": f"{topic}#{workflow_id}"},
                        "sk": {"S": e["id"]},
                        "body": {"S": json.dumps(e)},
                    },
                )
                settings.sqs().send_message(
                    QueueUrl=settings.get_settings().queue_url(workflow_id), MessageBody=_body(workflow_id, e)
                )
        return _answer([{"id": e["id"]} for e in events])

    def worker(self, event: dict[str, Any], context: Any) -> Any:
        _, shape, bodies = _shape_of_records(event)
        groups = [[b["event"]["id"] for b in bodies]] if shape.batch else [[b["event"]["id"]] for b in bodies]
        for ids in groups:
            for step in range(shape.steps):
                effect(step, ids)
        return {"batchItemFailures": []}

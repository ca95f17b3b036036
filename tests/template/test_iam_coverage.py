"""Least privilege, both ways: every AWS call the real handlers make is granted to their function, and
every grant is used by some call.

The example app runs end to end on moto through the very handlers the template deploys (API, worker),
SQS refusing one invoke's send. A botocore hook records each DynamoDB and SQS call with the function it
was made in; each call, translated into the IAM actions and resources AWS authorises it as, must be
granted by that function's ``FunctionSpec`` in the infrastructure model, which the roles are rendered from.
Calls made outside any function (the test's set-up, the emulated event source mappings) are Lambda's
own or the operator's and are not checked; the other way round, the queue actions Lambda's event source
mapping needs from the worker's role (``CONSUME_ACTIONS``) are the one grant no handler calls.
"""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers.apigw import LambdaContext, http_event, load_function
from helpers.worker import Pump
from polos.api.keys import KeyStore
from polos.app import App
from polos.aws import settings
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.runtime import clock

from infra.model import CONSUME_ACTIONS, DEAD_LETTER_ACTIONS, FUNCTIONS, AppModel, FunctionSpec, build_model

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("polos_function", default=None)
Call = tuple[str, str, str]  # (function, IAM action, resource: table name, "table/index/name" or queue URL)


def _iam(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one call (transactions item by item, batches per table)."""
    if service == "sqs":
        action = operation.removesuffix("Batch")  # IAM authorises SQS batch calls as their single action
        return [(f"sqs:{action}", params["QueueUrl"])]
    if operation == "TransactWriteItems":
        kinds = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        return [
            (f"dynamodb:{kinds[kind]}", body["TableName"])
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if operation == "TransactGetItems":
        return [("dynamodb:GetItem", item["Get"]["TableName"]) for item in params["TransactItems"]]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", table) for table in params["RequestItems"]]
    table = params["TableName"] + (f"/index/{params['IndexName']}" if params.get("IndexName") else "")
    return [(f"dynamodb:{operation}", table)]


@pytest.fixture
def calls(stack: dict[str, str]) -> Iterator[list[Call]]:
    seen: list[Call] = []

    def record(event_name: str, params: dict[str, Any], **kwargs: Any) -> None:
        function = CURRENT.get()
        if function is not None:
            _, service, operation = event_name.split(".")
            seen.extend((function, action, resource) for action, resource in _iam(service, operation, params))

    clients = (settings.dynamodb(), settings.sqs())
    for client in clients:
        client.meta.events.register("before-parameter-build.*.*", record)
    yield seen
    for client in clients:
        client.meta.events.unregister("before-parameter-build.*.*", record)


@contextmanager
def sqs_refuses_sends() -> Iterator[None]:
    """SQS answers every send with a 500 error (no retry: the answer short-circuits the HTTP request)."""

    def refuse(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "InternalError", "Message": "injected by the test"}
        return None, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    events = settings.sqs().meta.events
    names = ("before-call.sqs.SendMessage", "before-call.sqs.SendMessageBatch")
    for name in names:
        events.register(name, refuse)
    try:
        yield
    finally:
        for name in names:
            events.unregister(name, refuse)


def invoke(spec: FunctionSpec, event: dict[str, Any]) -> Any:
    """Call the function's handler as Lambda would, with its calls attributed to it."""
    token = CURRENT.set(spec.logical_id)
    try:
        return load_function(spec.handler.split("/")[0]).handler(event, LambdaContext())
    finally:
        CURRENT.reset(token)


def answer(model: AppModel, method: str, path: str, key: str, **options: Any) -> tuple[int, Any]:
    """The API function, as API Gateway invokes it; returns its status and JSON body."""
    event = http_event(method, path, api_key=key, **options)
    response = invoke(model.function("serves_api"), event)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def request(model: AppModel, method: str, path: str, key: str, **options: Any) -> Any:
    """The API function's status for one request."""
    return answer(model, method, path, key, **options)[0]


def started(model: AppModel, key: str, workflow_id: str, payload: dict[str, Any]) -> str:
    """Run ``workflow_id`` through the API; its run id."""
    status, body = answer(
        model, "POST", f"/api/v1/workflows/{workflow_id}/run", key, body={"payload": payload}
    )
    assert status == 202, body
    return str(body["run_id"])


QUEUES = "workflow queues"
DEAD_LETTER_QUEUES = "dead-letter queues"


def _resource(resource: str) -> str:
    """A call's resource as the grants name it: table names as they are, any workflow queue as QUEUES, any
    dead-letter queue as DEAD_LETTER_QUEUES."""
    if not resource.startswith(settings.get_settings().queue_url_prefix):
        return resource
    return DEAD_LETTER_QUEUES if resource.endswith(settings.DEAD_LETTER_SUFFIX) else QUEUES


def grants(model: AppModel, names: dict[str, str]) -> set[Call]:
    """Every (function, action, resource) the template's roles grant, rendered from the model."""
    granted: set[Call] = set()
    for spec in model.functions:
        granted |= {(spec.logical_id, action, QUEUES) for action in spec.queue_actions}
        if spec.manages_dead_letters:
            granted |= {(spec.logical_id, action, DEAD_LETTER_QUEUES) for action in DEAD_LETTER_ACTIONS}
        for access in spec.tables:
            table = names[access.table.env_var]
            granted |= {(spec.logical_id, action, table) for action in access.actions}
            granted |= {
                (spec.logical_id, action, f"{table}/index/{index.name}")
                for action in access.index_actions
                for index in access.table.indexes
            }
    return granted


def test_every_call_of_every_function_is_granted(
    stack: dict[str, str], example_app: App, calls: list[Call]
) -> None:
    model = build_model(example_app)
    _, key = KeyStore().create("iam-coverage")
    signup = {"topic": "user/signup", "events": [{"data": {"user_id": "u1", "email": "u1@example.com"}}]}
    for _ in range(2):  # the second is an idempotent replay
        headers = {"Idempotency-Key": "k"}
        assert request(model, "POST", "/api/v1/events/publish", key, body=signup, headers=headers) == 200
    for number, (topic, data) in enumerate(
        [
            ("order/created", {"order_id": "o1"}),
            ("analytics/events", {"page": "/"}),
            ("notifications/system", {"message": "hi"}),
            ("notifications/new", {"message": "hello"}),
        ]
    ):
        event = {"data": data, "event_type": "high_priority", "id": f"client-{number}"}
        body = {"topic": topic, "events": [event]}
        assert request(model, "POST", "/api/v1/events/publish", key, body=body) == 200
    run = {"payload": {"email": "ada@example.com", "name": "Ada"}}
    assert request(model, "POST", "/api/v1/workflows/create_user/run", key, body=run) == 202
    with sqs_refuses_sends():  # the queued run of a run whose message SQS refused is removed again
        assert request(model, "POST", "/api/v1/workflows/create_user/run", key, body=run) == 500

    trial = {"payload": {"user_id": "u1", "trial_seconds": 3600}}  # a wait long enough for a timer item
    assert request(model, "POST", "/api/v1/workflows/trial-reminder/run", key, body=trial) == 202
    deliver([WorkflowMessage("nightly-report", "schedule", scheduled_time="2026-11-30T02:00:00Z")])

    # Waits that something else ends: a human approval (resumed, or cancelled while waiting), a payment
    # event (published through the API, or not in time), a child run.
    approved = started(model, key, "expense-approval", {"request_id": "e1", "amount": 12.5})
    cancelled = started(model, key, "expense-approval", {"request_id": "e2", "amount": 99})
    paid = started(model, key, "order-fulfillment", {"order_id": "o-paid"})
    unpaid = started(model, key, "order-fulfillment", {"order_id": "o-unpaid"})

    worker = model.function("consumes_queues")
    pump = Pump(example_app, stack, invoke=lambda event: invoke(worker, event))
    pump.drain(timeout=60)
    payment = {"topic": "payment/succeeded", "events": [{"data": {"order_id": "o-paid", "amount": 30}}]}
    assert request(model, "POST", "/api/v1/events/publish", key, body=payment) == 200
    decision = {"step_key": "approval", "data": {"approved": True, "by": "bob"}}
    assert request(model, "POST", f"/api/v1/runs/{approved}/resume", key, body=decision) == 200
    assert request(model, "POST", f"/api/v1/runs/{approved}/resume", key, body=decision) == 409
    assert request(model, "POST", f"/api/v1/executions/{cancelled}/cancel", key) == 200
    assert request(model, "POST", f"/api/v1/runs/{cancelled}/cancel", key) == 200  # idempotent
    pump.drain(timeout=60)
    clock.advance(3600)  # the trial is over, and o-unpaid's hour to pay: the timers function wakes them
    try:
        # + the paid order's timeout timer, whose wake-up the worker turns away (the run has ended)
        assert invoke(model.function("sweeps_timers"), {}) == {"woken": 3}
        pump.drain(timeout=60)
    finally:
        clock.reset()
    outcomes = {
        run_id: answer(model, "GET", f"/api/v1/runs/{run_id}", key)[1]
        for run_id in (approved, cancelled, paid, unpaid)
    }
    assert [outcomes[run_id]["status"] for run_id in (approved, cancelled, paid, unpaid)] == [
        "completed",
        "cancelled",
        "completed",
        "completed",
    ], outcomes
    assert outcomes[approved]["result"] == {"request_id": "e1", "approved": True}
    assert outcomes[paid]["result"]["receipt"] == {"order_id": "o-paid", "amount": 30}
    assert outcomes[unpaid]["result"] == {"order_id": "o-unpaid", "paid": False}

    assert request(model, "GET", "/api/v1/runs", key, query={"workflow_id": "user-signup-handler"}) == 200
    assert request(model, "GET", "/api/v1/runs", key) == 200
    assert request(model, "GET", "/api/v1/events", key, query={"topic": "user/signup"}) == 200
    assert request(model, "GET", "/api/v1/runs/run_missing", key) == 404
    assert request(model, "GET", "/api/v1/executions/run_missing", key) == 404
    assert request(model, "GET", "/api/v1/runs", "pk_wrong.secret") == 401

    # A dead letter (put there by hand: an invocation of a run that does not exist), listed and redriven.
    letter = WorkflowMessage("create_user", "invoke", run_id="run_" + "0" * 26)
    dlq = settings.get_settings().queue_url("create_user") + settings.DEAD_LETTER_SUFFIX
    settings.sqs().send_message(QueueUrl=dlq, MessageBody=letter.to_json())
    listed = answer(model, "GET", "/api/v1/workflows/create_user/dead-letters", key)[1]
    assert listed["approximate_count"] == 1
    redriven = answer(model, "POST", "/api/v1/workflows/create_user/dead-letters/redrive", key)[1]
    assert redriven == {"moved": 1}
    pump.drain(timeout=60)  # the worker acknowledges it: no such run, nothing to run

    names = {spec.env_var: os.environ[spec.env_var] for spec in model.tables}  # set by the `stack` fixture
    used = {(function, action, _resource(resource)) for function, action, resource in calls}
    granted = grants(model, names)
    refused = used - granted
    assert not refused, f"calls the roles would refuse (add them to infra/model.py): {sorted(refused)}"
    worker = model.function("consumes_queues").logical_id
    event_source_mapping = {(worker, action, QUEUES) for action in CONSUME_ACTIONS}
    unused = granted - used - event_source_mapping
    assert not unused, f"grants no handler uses (remove them from infra/model.py): {sorted(unused)}"
    assert {function for function, _, _ in calls} == {spec.logical_id for spec in FUNCTIONS}

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
from polos import EventPayload, WorkflowContext, workflow
from polos.api.keys import KeyStore
from polos.app import App
from polos.aws import settings
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.publish.publishing import NewEvent, publish_events
from polos.runtime import clock, worker
from polos.runtime.records import RUN_ITEM_BUDGET

from infra.local.faults.iam import iam_requests
from infra.model import (
    CONSUME_ACTIONS,
    DEAD_LETTER_ACTIONS,
    EVENTS_TABLE,
    FUNCTIONS,
    RUNS_TABLE,
    AppModel,
    FunctionSpec,
    build_model,
)

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("polos_function", default=None)
Call = tuple[str, str, str]  # (function, IAM action, resource: table name, "table/index/name" or queue URL)


def _iam(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one call, resources by table name or queue URL."""
    return iam_requests(service, operation, params, lambda name: name)


@contextmanager
def recording() -> Iterator[list[Call]]:
    """Records each DynamoDB and SQS call made inside a function (on the clients the settings have now)."""
    seen: list[Call] = []

    def record(event_name: str, params: dict[str, Any], **kwargs: Any) -> None:
        function = CURRENT.get()
        if function is not None:
            _, service, operation = event_name.split(".")
            seen.extend((function, action, resource) for action, resource in _iam(service, operation, params))

    clients = (settings.dynamodb(), settings.sqs())
    for client in clients:
        client.meta.events.register("before-parameter-build.*.*", record)
    try:
        yield seen
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build.*.*", record)


@pytest.fixture
def calls(stack: dict[str, str]) -> Iterator[list[Call]]:
    with recording() as seen:
        yield seen


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


# The worker's calls on rarer paths than the example app takes, walked by
# test_the_workers_fenced_and_racing_writes_are_granted: a step write fenced by the lease, gap markers.
RARE_WORKER_CALLS = (("dynamodb:ConditionCheckItem", RUNS_TABLE), ("dynamodb:BatchWriteItem", EVENTS_TABLE))
# Granted, not walked here: the look-back of a waiter over events published while it registered (Query of
# the event blocks) and the removal of a waiter without ``match`` on a timeout or cancel (DeleteItem).
UNWALKED_WORKER_CALLS = (("dynamodb:Query", EVENTS_TABLE), ("dynamodb:DeleteItem", EVENTS_TABLE))
# Granted for queues, which the example app does not declare: the worker removes a run from its key's
# backlog (DeleteItem), the queues route reads the slot shards (GetItem); walked under the ``iam`` fault by
# tests/queues/test_queues.py::test_a_slot_taken_queued_for_and_handed_on_is_granted_by_the_template.
QUEUE_CALLS = (("WorkerFunction", "dynamodb:DeleteItem"), ("ApiFunction", "dynamodb:GetItem"))
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
    not_walked = (*RARE_WORKER_CALLS, *UNWALKED_WORKER_CALLS)
    rare = {(worker, action, names[table.env_var]) for action, table in not_walked}
    queue_paths = {(function, action, names[RUNS_TABLE.env_var]) for function, action in QUEUE_CALLS}
    unused = granted - used - event_source_mapping - rare - queue_paths
    assert not unused, f"grants no handler uses (remove them from infra/model.py): {sorted(unused)}"
    assert {function for function, _, _ in calls} == {spec.logical_id for spec in FUNCTIONS}


@workflow(id="big-result")
async def big_result(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("first", lambda: "done")
    # With the payload, more than the run item holds: the result is kept apart, and the pending last step
    # is journaled first in its own item, fenced by the lease.
    return "x" * (RUN_ITEM_BUDGET // 2)


@workflow(id="racing-publisher", trigger_on_event="iam/start")
async def racing_publisher(ctx: WorkflowContext, payload: EventPayload) -> str:
    event = await ctx.step.publish_event("announce", "iam/race", {"n": 1})
    return event.id


@contextmanager
def claimed_first(topic: str) -> Iterator[None]:
    """Another publisher stores the worker's next client-id event just before the worker's own claim
    transaction: the worker loses the id race and marks its reserved sequence id as a gap."""
    raced: list[str] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        puts = [item["Put"] for item in params["TransactItems"] if "Put" in item]
        claims = [put["Item"] for put in puts if put["Item"]["pk"]["S"].startswith(f"id#{topic}#")]
        if raced or not claims or CURRENT.get() is None:
            return
        event_id = claims[0]["id"]["S"]
        raced.append(event_id)
        token = CURRENT.set(None)  # the other publisher's calls are not the worker's
        try:
            publish_events(topic, [NewEvent(id=event_id, data={"n": 0})])
        finally:
            CURRENT.reset(token)

    events = settings.dynamodb().meta.events
    events.register("before-parameter-build.dynamodb.TransactWriteItems", race)
    try:
        yield
    finally:
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", race)
    assert raced, "the worker never tried to claim its event's id"


def test_the_workers_fenced_and_racing_writes_are_granted(provision_app: Any) -> None:
    """The worker's rarer writes: a step fenced by the lease (a result kept apart with a pending last step,
    a ConditionCheckItem on the runs table) and a lost client-id race (gap markers, BatchWriteItem on the
    events table)."""
    app = App("iam-paths", [big_result, racing_publisher])
    urls = provision_app(app)
    model = build_model(app)
    spec = model.function("consumes_queues")

    def as_worker(event: dict[str, Any]) -> Any:
        token = CURRENT.set(spec.logical_id)
        try:
            return worker.handle(event, app)
        finally:
            CURRENT.reset(token)

    _, key = KeyStore().create("iam-paths")
    publish_events("iam/start", [NewEvent(id=None, data={})])
    with recording() as calls:
        started(model, key, "big-result", {"pad": "y" * (RUN_ITEM_BUDGET // 2)})
        with claimed_first("iam/race"):
            Pump(app, urls, invoke=as_worker).drain(timeout=60)

    used = set(calls)
    for action, table in RARE_WORKER_CALLS:
        assert (spec.logical_id, action, os.environ[table.env_var]) in used, f"the walk missed {action}"
    names = {table.env_var: os.environ[table.env_var] for table in model.tables}
    refused = {(f, action, _resource(resource)) for f, action, resource in used} - grants(model, names)
    assert not refused, f"calls the roles would refuse (add them to infra/model.py): {sorted(refused)}"

"""Least privilege that still works: every AWS call the real handlers make is granted to their function.

The example app runs end to end on moto through the very handlers the template deploys (authorizer, API,
worker). A botocore hook records each DynamoDB and SQS call with the function it was made in; each call,
translated into the IAM actions and resources AWS authorises it as, must be granted by that function's
``FunctionSpec`` in the infrastructure model, which is what the template's roles are rendered from.
Calls made outside any function (the test's set-up, the emulated event source mappings) are Lambda's
own or the operator's and are not checked.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.apigw import LambdaContext, authorizer_event, http_event, load_function
from helpers.worker import Pump
from polos.api.keys import KeyStore
from polos.app import App
from polos.aws import settings

from infra.model import FUNCTIONS, AppModel, FunctionSpec, build_model

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("polos_function", default=None)
Call = tuple[str, str, str]  # (function, IAM action, resource: table name, "table/index/name" or queue URL)


def _iam(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM checks for one call (transactions item by item, batches per table)."""
    if service == "sqs":
        action = "SendMessage" if operation == "SendMessageBatch" else operation
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


def invoke(spec: FunctionSpec, event: dict[str, Any]) -> Any:
    """Call the function's handler as Lambda would, with its calls attributed to it."""
    token = CURRENT.set(spec.logical_id)
    try:
        return load_function(spec.handler.split("/")[0]).handler(event, LambdaContext())
    finally:
        CURRENT.reset(token)


def request(model: AppModel, method: str, path: str, key: str, **options: Any) -> Any:
    """Authorizer, then API, as API Gateway runs them; returns the API's status."""
    event = http_event(method, path, api_key=key, **options)
    verdict = invoke(model.function("authorizes_api"), authorizer_event(event))
    event["requestContext"]["authorizer"] = {"lambda": verdict["context"]}
    return invoke(model.function("serves_api"), event)["statusCode"]


def allowed(model: AppModel, names: dict[str, str], function: str, action: str, resource: str) -> bool:
    """Whether ``function``'s role grants ``action`` on ``resource`` (as the template renders it)."""
    spec = next(f for f in model.functions if f.logical_id == function)
    if action.startswith("sqs:"):
        granted = {"sqs:SendMessage"} if spec.sends_to_queues else set()
        if spec.consumes_queues:
            granted |= {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            }
        return action in granted and resource.startswith(settings.get_settings().queue_url_prefix)
    table, _, index = resource.partition("/index/")
    return any(
        names[access.table.env_var] == table
        and action in access.actions
        and (not index or (access.indexes and index in {i.name for i in access.table.indexes}))
        for access in spec.tables
    )


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

    worker = model.function("consumes_queues")
    Pump(example_app, stack, invoke=lambda event: invoke(worker, event)).drain(timeout=60)

    assert request(model, "GET", "/api/v1/runs", key, query={"workflow_id": "user-signup-handler"}) == 200
    assert request(model, "GET", "/api/v1/runs", key) == 200
    assert request(model, "GET", "/api/v1/events", key, query={"topic": "user/signup"}) == 200
    assert request(model, "GET", "/api/v1/runs/run_missing", key) == 404
    assert request(model, "GET", "/api/v1/executions/run_missing", key) == 404
    assert request(model, "GET", "/api/v1/runs", "pk_wrong.secret") == 401

    names = {spec.env_var: os.environ[spec.env_var] for spec in model.tables}  # set by the `stack` fixture
    denied = sorted({c for c in calls if not allowed(model, names, *c)})
    assert denied == [], "calls the deployed roles would refuse (add them to infra/model.py FUNCTIONS)"
    assert {function for function, _, _ in calls} == {spec.logical_id for spec in FUNCTIONS}

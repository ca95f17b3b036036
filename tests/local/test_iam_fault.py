"""The ``iam`` fault: under the local stack each function's AWS calls are authorised by its own role as
``template.yaml`` renders it (action and resource ARN, transactions item by item), as AWS would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from polos import WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.runtime.records import RUN_ITEM_BUDGET
from polos.testing import Stack, local_stack

from infra.local.faults.iam import IamEnforcement, local_values
from infra.local.functions import as_function
from infra.model import API_FUNCTION, TIMERS_FUNCTION, WORKER_FUNCTION
from infra.template import logical_name


def enforcement(stack: Stack) -> IamEnforcement:
    iam = stack._local.iam
    assert iam is not None, "aws_faults='iam' did not install the enforcement"
    return iam


def denied_code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


@pytest.fixture
def example(example_app: App) -> Iterator[Stack]:
    with local_stack(example_app, aws_faults="iam", max_attempts=2) as stack:
        yield stack


def test_a_function_without_a_grant_is_refused_as_aws_refuses_it(example: Stack) -> None:
    iam = enforcement(example)
    assert example.request("GET", "/api/v1/runs").status == 200
    iam.roles[API_FUNCTION.logical_id] = iam.roles[API_FUNCTION.logical_id].without("dynamodb:GetItem")
    answer = example.request("GET", "/api/v1/runs")  # the key check's GetItem is refused
    assert (answer.status, answer.body["error_type"]) == (500, "internal_error")
    keys_table = settings.get_settings().keys_table
    ((function, action, resource),) = iam.refused
    assert (function, action) == (API_FUNCTION.logical_id, "dynamodb:GetItem")
    assert resource == f"arn:aws:dynamodb:us-east-1:123456789012:table/{keys_table}"
    assert example.fault_counts()["iam"] == 1  # counted with the other faults (polos dev prints them)
    get_key = lambda: settings.dynamodb().get_item(TableName=keys_table, Key={"pk": {"S": "k"}})  # noqa: E731
    assert denied_code(lambda: as_function(API_FUNCTION, get_key)) == "AccessDeniedException"
    get_key()  # outside any function: the operator's own call


def test_grants_are_judged_by_resource_not_only_by_action(example: Stack) -> None:
    """The timers function may Query the runs table, not the events table; the API function may receive
    from a dead-letter queue, not send to it."""
    dynamodb, sqs = settings.dynamodb(), settings.sqs()
    runs, events = settings.get_settings().runs_table, settings.get_settings().events_table
    query = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "x"}}}
    as_function(TIMERS_FUNCTION, lambda: dynamodb.query(TableName=runs, **query))
    assert denied_code(
        lambda: as_function(TIMERS_FUNCTION, lambda: dynamodb.query(TableName=events, **query))
    ) == ("AccessDeniedException")
    dlq = example._local.dlq_url("create_user")
    as_function(API_FUNCTION, lambda: sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0))
    send = lambda: sqs.send_message(QueueUrl=dlq, MessageBody="{}")  # noqa: E731
    assert denied_code(lambda: as_function(API_FUNCTION, send)) == "AccessDenied"
    assert denied_code(lambda: as_function(API_FUNCTION, sqs.list_queues)) == "AccessDenied"
    assert [(f, a) for f, a, _ in enforcement(example).refused] == [
        (TIMERS_FUNCTION.logical_id, "dynamodb:Query"),
        (API_FUNCTION.logical_id, "sqs:SendMessage"),
        (API_FUNCTION.logical_id, "sqs:ListQueues"),
    ]


def test_the_roles_name_the_local_stacks_real_arns(example: Stack) -> None:
    """The template's intrinsics resolve to the ARNs moto gave the tables and queues."""
    local = example._local
    values = local_values(
        local.model, {t.logical_id: local.names.table(t) for t in local.model.tables}, local.names.prefix
    )
    for table in local.model.tables:
        described = settings.dynamodb().describe_table(TableName=local.names.table(table))["Table"][
            "TableArn"
        ]
        assert values[f"{table.logical_id}.Arn"] == described
    for queue in local.model.queues:
        for url, logical in (
            (local.urls[queue.workflow_id], "Queue"),
            (local.dlq_url(queue.workflow_id), "DeadLetterQueue"),
        ):
            attributes = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            assert (
                values[f"{logical}{logical_name(queue.workflow_id)}.Arn"]
                == attributes["Attributes"]["QueueArn"]
            )


@workflow(id="big-result")
async def big_result(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("first", lambda: "done")
    # With the payload, more than the run item holds: the result is kept apart, and the pending last step is
    # journaled first, fenced by the lease: a transaction whose ConditionCheck is on the runs table.
    return "x" * (RUN_ITEM_BUDGET // 2)


@pytest.mark.parametrize("grant", [True, False], ids=["granted", "without-ConditionCheckItem"])
def test_a_fenced_step_write_needs_condition_check_item_on_the_runs_table(grant: bool) -> None:
    with local_stack(App("fenced", [big_result]), aws_faults="iam", max_attempts=1) as stack:
        iam = enforcement(stack)
        worker = WORKER_FUNCTION.logical_id
        if not grant:
            iam.roles[worker] = iam.roles[worker].without("dynamodb:ConditionCheckItem")
        run_id = stack.invoke("big-result", {"pad": "y" * (RUN_ITEM_BUDGET // 2)})
        stack.drain()
        run = stack.run(run_id)
        refused = {(function, action) for function, action, _ in iam.refused}
    if grant:
        assert (run["status"], len(run["result"])) == ("completed", RUN_ITEM_BUDGET // 2)
        assert refused == set()
    else:
        # As on AWS: every delivery ran the step again and died on the refusal, until the run failed.
        assert (run["status"], run["error"]["type"]) == ("failed", "DeliveryExhausted"), run
        assert refused == {(worker, "dynamodb:ConditionCheckItem")}


def test_the_example_apps_flows_run_under_their_roles(example: Stack) -> None:
    """Events, batches, a direct run, waits (timer, approval, event with its timeout), a child run, a
    cancel, the timers sweep and a dead letter redriven: nothing any role would refuse."""
    stack = example
    stack.publish("user/signup", [{"data": {"user_id": "u1", "email": "u1@example.com"}}], "signup-1")
    stack.publish("order/created", [{"data": {"order_id": "o1"}, "id": "client-1"}])
    stack.publish("analytics/events", [{"data": {"page": f"/{n}"}} for n in range(3)])
    stack.publish("notifications/new", [{"data": {"message": "hi"}, "event_type": "high_priority"}])
    created = stack.invoke("create_user", {"email": "ada@example.com", "name": "Ada"})
    trial = stack.invoke("trial-reminder", {"user_id": "u1", "trial_seconds": 3600})
    approved = stack.invoke("expense-approval", {"request_id": "e1", "amount": 12.5})
    cancelled = stack.invoke("expense-approval", {"request_id": "e2", "amount": 99})
    paid = stack.invoke("order-fulfillment", {"order_id": "o-paid"})
    unpaid = stack.invoke("order-fulfillment", {"order_id": "o-unpaid"})
    stack.drain()
    stack.publish("payment/succeeded", [{"data": {"order_id": "o-paid", "amount": 30}}])
    decision = {"step_key": "approval", "data": {"approved": True, "by": "bob"}}
    assert stack.request("POST", f"/api/v1/runs/{approved}/resume", decision).status == 200
    assert stack.request("POST", f"/api/v1/runs/{cancelled}/cancel").status == 200
    stack.drain()
    stack.advance(hours=1)  # the trial is over, and o-unpaid's hour to pay: the timers sweep wakes them
    stack.drain()

    # A dead letter: the welcome email fails on every delivery, then works; the letter is redriven.
    stack.fail_step("send_welcome", times=100)
    stack.publish("user/signup", [{"data": {"user_id": "u2", "email": "u2@example.com"}}])
    stack.drain()
    assert len(stack.dead_letters("user-signup-handler")) == 1
    stack.clear_faults()
    assert stack.request("GET", "/api/v1/workflows/user-signup-handler/dead-letters").status == 200
    redrive = stack.request("POST", "/api/v1/workflows/user-signup-handler/dead-letters/redrive")
    assert redrive.body == {"moved": 1}
    stack.drain()

    statuses = {run_id: stack.run(run_id)["status"] for run_id in (created, trial, approved, cancelled)}
    assert list(statuses.values()) == ["completed", "completed", "completed", "cancelled"], statuses
    assert stack.run(paid)["result"]["receipt"] == {"order_id": "o-paid", "amount": 30}
    assert stack.run(unpaid)["result"] == {"order_id": "o-unpaid", "paid": False}
    everything = stack.runs()
    assert {run["workflow_id"] for run in everything} >= {
        "batch-processor",
        "send-receipt",
        "user-signup-handler",
    }
    assert [run for run in everything if run["status"] not in ("completed", "cancelled")] == []
    assert enforcement(stack).refused == []

"""Cron schedules: checked at decoration, rendered for EventBridge Scheduler, one run per firing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from polos import SchedulePayload, WorkflowContext, workflow
from polos.app import App
from polos.errors import WorkflowDefinitionError
from polos.publish.fanout import deliver
from polos.publish.messages import WorkflowMessage
from polos.schedules import Schedule
from polos.testing import Stack, local_stack

from infra.model import build_model
from infra.template import render_template

seen: list[dict[str, Any]] = []


@workflow(id="every-five", schedule="*/5 * * * *")
async def every_five(ctx: WorkflowContext, payload: SchedulePayload) -> str:
    seen.append(payload.model_dump(mode="json"))
    return await ctx.step.run("tick", lambda: payload.timestamp.isoformat())


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 3 * *", r"must have 5 fields"),
        ("0 0 3 * * *", r"must have 5 fields"),
        ("61 3 * * *", r"not a valid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, r"'Mars/Olympus' is not an IANA time zone"),
        ({"cron": "0 3 * * *", "zone": "UTC"}, r"unknown key\(s\) \['zone'\]"),
        ("0 3 1 * 1", r"restricts both day of month and day of week"),
        (3, r"must be a cron string"),
    ],
)
def test_a_bad_schedule_fails_at_decoration_naming_it(schedule: Any, message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"workflow 'bad': schedule.*" + message):

        @workflow(id="bad", schedule=schedule)
        async def bad(ctx: WorkflowContext) -> None: ...


def test_a_scheduled_workflow_is_not_also_event_triggered() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"not also event-triggered"):

        @workflow(id="both", schedule="0 3 * * *", trigger_on_event="a/b")
        async def both(ctx: WorkflowContext) -> None: ...


@pytest.mark.parametrize(
    ("cron", "expression"),
    [
        ("0 3 * * *", "cron(0 3 * * ? *)"),
        ("*/15 9-11 * * 1-5", "cron(0,15,30,45 9,10,11 ? * 2,3,4,5,6 *)"),
        ("0 12 * * 0,7", "cron(0 12 ? * 1 *)"),
        ("30 6 1,15 * *", "cron(30 6 1,15 * ? *)"),
        ("0 0 * 1 6", "cron(0 0 ? 1 7 *)"),
    ],
)
def test_cron_renders_the_same_times_for_eventbridge_scheduler(cron: str, expression: str) -> None:
    assert Schedule(cron).aws_expression() == expression


def test_the_payload_names_this_firing_and_the_one_before_in_the_schedules_zone() -> None:
    paris = Schedule("0 3 * * *", "Europe/Paris")
    fired = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 03:00 in Paris (UTC+1)
    payload = paris.payload(fired)
    assert payload == {
        "timestamp": "2026-11-30T02:00:00.000000Z",
        "last_timestamp": "2026-11-29T02:00:00.000000Z",
        "timezone": "Europe/Paris",
        "schedule_id": None,
        "key": None,
        "upcoming": "2026-12-01T02:00:00.000000Z",
        "schedule": "0 3 * * *",
    }
    summer = paris.next_after(datetime(2026, 7, 1, tzinfo=UTC))
    assert summer == datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 03:00 in Paris (UTC+2)


@pytest.fixture
def stack() -> Iterator[Stack]:
    seen.clear()
    with local_stack(App("scheduled", [every_five])) as opened:
        yield opened


def test_each_firing_starts_exactly_one_run_with_its_schedule_payload(stack: Stack) -> None:
    stack.drain()
    assert stack.runs("every-five") == []
    stack.advance(minutes=5)
    stack.drain()
    (run,) = stack.runs("every-five")
    assert run["status"] == "completed" and run["trigger"] == {"type": "schedule", "event_ids": []}
    assert len(seen) == 1 and seen[0]["schedule"] == "*/5 * * * *" and seen[0]["timezone"] == "UTC"
    fired = datetime.fromisoformat(seen[0]["timestamp"].replace("Z", "+00:00"))
    assert fired.minute % 5 == 0 and fired.second == 0
    # The same firing delivered again (Scheduler is at-least-once) is the same run.
    deliver([WorkflowMessage("every-five", "schedule", scheduled_time=seen[0]["timestamp"])])
    stack.drain()
    assert len(stack.runs("every-five")) == 1 and len(seen) == 1


def test_firings_missed_while_asleep_run_once_not_once_each(stack: Stack) -> None:
    stack.advance(hours=3)  # 36 firings missed (a laptop asleep)
    stack.drain()
    assert len(stack.runs("every-five")) == 1


def test_the_template_renders_each_schedule_with_its_zone_and_a_role_that_only_sends_to_its_queue() -> None:
    @workflow(id="nightly", schedule={"cron": "0 3 * * *", "timezone": "Europe/Paris"})
    async def nightly(ctx: WorkflowContext, payload: SchedulePayload) -> None: ...

    doc = render_template(build_model(App("schedules", [nightly, every_five])), "app")
    schedule = doc["Resources"]["ScheduleNightly"]["Properties"]
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["QueueNightly", "Arn"]}
    message = json.loads(schedule["Target"]["Input"])
    assert message["kind"] == "schedule" and message["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert WorkflowMessage.from_json(schedule["Target"]["Input"]).workflow_id == "nightly"
    role = doc["Resources"]["SchedulerRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    sends = next(s for s in statements if s["Action"] == ["sqs:SendMessage"])
    assert sends["Resource"] == [
        {"Fn::GetAtt": ["QueueEveryFive", "Arn"]},
        {"Fn::GetAtt": ["QueueNightly", "Arn"]},
    ]

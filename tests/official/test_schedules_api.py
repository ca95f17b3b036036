"""``polos.schedules``: ``@workflow(schedule=True)``, per-key schedules created, replaced, listed, deleted
and fired once per minute by ``polos dev``'s emulator of EventBridge Scheduler (issue 25)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers.stack_polos import StackPolos
from polos import SchedulePayload, WorkflowContext, schedules, workflow
from polos.app import App
from polos.errors import PolosAPIError
from polos.testing import Stack, local_stack

fired: list[dict[str, Any]] = []


@workflow(id="reminder", schedule=True)
async def reminder(ctx: WorkflowContext, payload: SchedulePayload) -> str:
    fired.append(payload.model_dump(mode="json"))
    return str(payload.key)


@workflow(id="plain")
async def plain(ctx: WorkflowContext) -> None: ...


@pytest.fixture
def stack() -> Iterator[Stack]:
    fired.clear()
    with local_stack(App("keyed-schedules", [reminder, plain])) as opened:
        yield opened


def test_schedule_true_is_schedulable_with_no_default_schedule() -> None:
    assert reminder.schedulable and reminder.schedule is None
    assert reminder.payload_type is SchedulePayload


def test_the_schedule_payload_has_the_official_fields() -> None:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    payload = SchedulePayload(
        timestamp=now,
        last_timestamp=now - timedelta(days=1),
        timezone="UTC",
        schedule_id="manual",
        key="k",
        upcoming=now + timedelta(days=1),
    )
    assert (payload.schedule_id, payload.key, payload.upcoming) == ("manual", "k", now + timedelta(days=1))


def test_one_schedule_per_workflow_and_key_created_replaced_listed_and_deleted(stack: Stack) -> None:
    polos = StackPolos(stack)

    async def scenario() -> None:
        alice = await schedules.create(client=polos, workflow="reminder", cron="0 8 * * *", key="alice")
        bob = await schedules.create(
            client=polos, workflow=reminder, cron="0 9 * * *", timezone="Europe/London", key="bob"
        )
        assert alice != bob
        again = await schedules.create(
            client=polos, workflow="reminder", cron="30 7 * * 1-5", timezone="Asia/Tokyo", key="alice"
        )
        assert again == alice  # created again with the same key: replaced
        listed = sorted(await schedules.list_schedules(polos, "reminder"), key=lambda s: s["key"])
        assert [(s["schedule_id"], s["key"], s["cron"], s["timezone"]) for s in listed] == [
            (alice, "alice", "30 7 * * 1-5", "Asia/Tokyo"),
            (bob, "bob", "0 9 * * *", "Europe/London"),
        ]
        await schedules.delete(polos, alice)
        assert [s["key"] for s in await schedules.list_schedules(polos)] == ["bob"]
        with pytest.raises(PolosAPIError) as gone:
            await schedules.delete(polos, alice)
        assert gone.value.status == 404

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"workflow_id": "plain", "cron": "* * * * *"}, 400, "not schedulable"),
        ({"workflow_id": "nope", "cron": "* * * * *"}, 404, "does not exist"),
        ({"workflow_id": "reminder", "cron": "61 * * * *"}, 400, "not a valid cron"),
        ({"workflow_id": "reminder", "cron": "* * * * *", "timezone": "Mars/Base"}, 400, "IANA"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_problem(
    stack: Stack, body: dict[str, Any], status: int, message: str
) -> None:
    answer = stack.request("POST", "/api/v1/schedules", body)
    assert answer.status == status and message in answer.body["error"]


def test_each_key_fires_once_per_minute_under_the_emulator_until_deleted(stack: Stack) -> None:
    polos = StackPolos(stack)
    ids = {
        key: asyncio.run(schedules.create(client=polos, workflow="reminder", cron="* * * * *", key=key))
        for key in ("a", "b")
    }
    stack.drain()  # the emulator sees both schedules
    assert stack.runs("reminder") == []
    stack.advance(minutes=1)
    stack.drain()
    assert sorted(p["key"] for p in fired) == ["a", "b"]
    first = {p["key"]: p for p in fired}
    for key, payload in first.items():
        assert payload["schedule_id"] == ids[key] and payload["timezone"] == "UTC"
        moment = datetime.fromisoformat(payload["timestamp"])
        assert moment.second == 0
        assert datetime.fromisoformat(payload["upcoming"]) == moment + timedelta(minutes=1)
        assert datetime.fromisoformat(payload["last_timestamp"]) == moment - timedelta(minutes=1)
    stack.drain()  # no new minute: no new firing
    assert len(stack.runs("reminder")) == 2
    asyncio.run(schedules.delete(polos, ids["a"]))
    stack.advance(minutes=1)
    stack.drain()
    assert sorted(p["key"] for p in fired) == ["a", "b", "b"]
    runs = stack.runs("reminder")
    assert len(runs) == 3 and all(run["status"] == "completed" for run in runs)
    assert all(run["trigger"]["type"] == "schedule" for run in runs)


def test_the_api_role_may_make_only_its_groups_schedules_under_the_iam_fault() -> None:
    """The template's grants, enforced as AWS would: the API function creates, lists, replaces and deletes
    schedules of the app's group (passing the scheduler role) and nothing else."""
    from polos.aws import settings

    from infra.local.functions import as_function
    from infra.model import API_FUNCTION, WORKER_FUNCTION

    with local_stack(App("keyed-schedules", [reminder, plain]), aws_faults="iam") as stack:
        iam = stack._local.iam
        assert iam is not None
        polos = StackPolos(stack)
        made = asyncio.run(schedules.create(client=polos, workflow="reminder", cron="* * * * *", key="k"))
        asyncio.run(schedules.create(client=polos, workflow="reminder", cron="*/2 * * * *", key="k"))
        assert [s["cron"] for s in asyncio.run(schedules.list_schedules(polos))] == ["*/2 * * * *"]
        asyncio.run(schedules.delete(polos, made))
        assert iam.refused == []

        def other_group() -> Any:
            return settings.scheduler().delete_schedule(Name=made, GroupName="someone-elses")

        for function in (API_FUNCTION, WORKER_FUNCTION):  # another group; a function without the grant
            refused = iam.refused[:]
            with pytest.raises(Exception, match="AccessDenied"):
                as_function(function, other_group)
            assert len(iam.refused) == len(refused) + 1
        role = iam.roles[API_FUNCTION.logical_id]
        iam.roles[API_FUNCTION.logical_id] = role.without("iam:PassRole")
        answer = stack.request("POST", "/api/v1/schedules", {"workflow_id": "reminder", "cron": "* * * * *"})
        assert answer.status == 500
        assert iam.refused[-1][1] == "iam:PassRole"


def test_the_template_gives_the_api_its_schedule_group_and_the_scheduler_role_the_queue() -> None:
    from polos.aws import settings

    from infra.model import build_model
    from infra.template import render_template

    doc = render_template(build_model(App("keyed-schedules", [reminder, plain])), "app")
    resources = doc["Resources"]
    assert resources["ScheduleGroup"]["Type"] == "AWS::Scheduler::ScheduleGroup"
    env = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env[settings.ENV_SCHEDULE_GROUP] == {"Ref": "ScheduleGroup"}
    assert env[settings.ENV_SCHEDULER_ROLE_ARN] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    statements = resources["SchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    sends = next(s for s in statements if s["Action"] == ["sqs:SendMessage"])
    assert sends["Resource"] == [{"Fn::GetAtt": ["QueueReminder", "Arn"]}]  # not the plain workflow's
    worker = resources["WorkerFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert not any("scheduler" in str(s["Action"]) for s in worker)

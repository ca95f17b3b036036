"""Batch workflows fed by real SQS messages (moto): each event lands in exactly one batch run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from helpers.runs import index_entries
from helpers.stack import provision
from helpers.worker import (
    Pump,
    answer_lost,
    atomic_dynamodb,
    count_requests,
    dlq_url,
    publish,
    queue_depth,
)
from polos import BatchEventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.payloads import EventItem
from polos.publish.fanout import deliver, event_messages
from polos.runtime import batches
from polos.runtime.journal import Journal
from polos.runtime.records import EventRef
from polos.runtime.worker import ref_of

MAX_ATTEMPTS = 2
seen: list[list[int]] = []  # the sequence ids each call of a batch step got
failing: set[str] = set()


def collect(sequence_ids: list[int]) -> list[int]:
    seen.append(sequence_ids)
    return sequence_ids


@workflow(id="wb-batch", trigger_on_event="wb/batch", batch_size=10, batch_timeout_seconds=5)
async def batch(ctx: WorkflowContext, payload: BatchEventPayload) -> dict[str, Any]:
    got = await ctx.step.run("collect", collect, [event.sequence_id for event in payload.events])
    if "wb-batch" in failing:
        raise RuntimeError(f"batch failed on attempt {ctx.attempt}")
    return {"count": len(got)}


@workflow(id="wb-poison", trigger_on_event="wb/poison", batch_size=5, batch_timeout_seconds=1)
async def poison(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    raise RuntimeError(f"poisoned batch of {len(payload.events)}, attempt {ctx.attempt}")


APP = App("worker-batches", [batch, poison])


@pytest.fixture
def urls(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv(settings.ENV_MAX_ATTEMPTS, str(MAX_ATTEMPTS))
    seen.clear()
    failing.clear()
    urls = provision(APP, tmp_path, monkeypatch, max_attempts=MAX_ATTEMPTS)
    with atomic_dynamodb():
        yield urls


@pytest.fixture
def pump(urls: dict[str, str]) -> Pump:
    return Pump(APP, urls)


def receive_all(url: str) -> list[Any]:
    answer = settings.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return list(answer.get("Messages", []))


def event_in(message: Any) -> EventItem:
    from polos.publish.messages import WorkflowMessage

    event = WorkflowMessage.from_json(message["Body"]).event
    assert event is not None
    return event


def runs_of(workflow_id: str) -> dict[str, tuple[str, int, list[int]]]:
    """Every run of the workflow: run id → (status, attempts, member sequence ids)."""
    items = index_entries(workflow_id)
    runs = {}
    for item in items:
        run_id = item["pk"]["S"].removeprefix("run#")
        loaded = Journal().load(run_id)
        assert loaded is not None
        members = [ref.sequence_id for ref in batches.load_members(run_id)]
        runs[run_id] = (loaded.run.status, loaded.run.attempts, members)
    return runs


def assert_each_event_in_exactly_one_run(workflow_id: str, events: list[EventItem]) -> dict[int, str]:
    """Members of all runs partition the events, and every claim names the run listing the event."""
    owner: dict[int, str] = {}
    for run_id, (_, _, members) in runs_of(workflow_id).items():
        for sequence_id in members:
            assert sequence_id not in owner, (
                f"event {sequence_id} is in runs {owner[sequence_id]} and {run_id}"
            )
            owner[sequence_id] = run_id
    assert sorted(owner) == sorted(event.sequence_id for event in events)
    claims = batches.read_claims(workflow_id, [ref_of(event) for event in events])
    assert {ref.sequence_id: run_id for ref, run_id in claims.items()} == owner
    return owner


def test_ten_events_make_one_batch_run_in_sequence_order(pump: Pump, urls: dict[str, str]) -> None:
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    delivery = pump.once("wb-batch")
    assert delivery is not None and len(delivery.messages) == 10 and not delivery.failed
    [(run_id, (status, attempts, members))] = runs_of("wb-batch").items()
    assert (status, attempts) == ("completed", 1)
    assert members == [event.sequence_id for event in events] == seen[0]
    loaded = Journal().load(run_id)
    assert (
        loaded is not None and loaded.run.trigger_type == "batch" and loaded.run.result_json == '{"count":10}'
    )
    assert_each_event_in_exactly_one_run("wb-batch", events)
    assert queue_depth(urls["wb-batch"]) == 0


def test_failed_batch_resumes_under_its_run_id_when_redelivered_in_other_groupings(
    pump: Pump, urls: dict[str, str]
) -> None:
    url = urls["wb-batch"]
    events = publish("wb/batch", *[{"n": n} for n in range(6)])
    failing.add("wb-batch")
    first = pump.once("wb-batch", batch_size=4, redeliver=False)
    assert first is not None and len(first.failed) == 4
    [(failed_run, (status, attempts, members))] = runs_of("wb-batch").items()
    assert (status, attempts) == ("queued", 1)
    in_first = sorted(event_in(m).sequence_id for m in first.messages)
    assert members == in_first
    failing.clear()
    pump.mapping("wb-batch").release(first.failed)
    messages = receive_all(url)
    assert len(messages) == 6
    old = [m for m in messages if event_in(m).sequence_id in in_first]
    new = [m for m in messages if event_in(m).sequence_id not in in_first]
    # SQS regroups: two of the failed batch's events with one new event, then the rest.
    mapping = pump.mapping("wb-batch")
    for group in ([*old[:2], new[0]], [*old[2:], new[1]]):
        delivery = mapping.deliver(group)
        assert not delivery.failed
    runs = runs_of("wb-batch")
    assert runs[failed_run] == ("completed", 2, in_first)
    assert sorted(members for _, _, members in runs.values()) == sorted(
        [in_first, [event_in(new[0]).sequence_id], [event_in(new[1]).sequence_id]]
    )
    # The failed batch's step ran once (attempt 1 journaled it); its replay saw the same events in order.
    assert seen.count(in_first) == 1
    assert_each_event_in_exactly_one_run("wb-batch", events)
    assert queue_depth(url) == 0


def test_events_claimed_meanwhile_by_another_run_are_left_to_it(
    pump: Pump, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = publish("wb/batch", *[{"n": n} for n in range(4)])
    messages = receive_all(urls["wb-batch"])
    by_seq = {event_in(m).sequence_id: m for m in messages}
    mapping = pump.mapping("wb-batch")
    first = mapping.deliver([by_seq[s] for s in sorted(by_seq)[:3]])
    assert not first.failed
    [(first_run, _)] = runs_of("wb-batch").items()
    # The second worker read the claims before the first one's transaction committed: it saw none.
    monkeypatch.setattr(batches, "read_owners", lambda workflow_id, refs: batches.Owners())
    deliver(event_messages("wb/batch", events[1:3]))  # SQS delivers the second and third events again
    again = [*receive_all(urls["wb-batch"]), by_seq[events[3].sequence_id]]
    assert len(again) == 3
    second = mapping.deliver(again)
    assert not second.failed
    monkeypatch.undo()
    runs = runs_of("wb-batch")
    assert runs[first_run] == ("completed", 1, [e.sequence_id for e in events[:3]])
    [other] = [run_id for run_id in runs if run_id != first_run]
    assert runs[other] == ("completed", 1, [events[3].sequence_id])
    assert_each_event_in_exactly_one_run("wb-batch", events)


def lapse_leases(workflow_id: str) -> None:
    """Every run of the workflow with its lease lapsed (as after the visibility timeout)."""
    for item in index_entries(workflow_id):
        settings.dynamodb().update_item(
            TableName=settings.get_settings().runs_table,
            Key={"pk": item["pk"], "sk": {"S": "run"}},
            UpdateExpression="SET lease_until = :past",
            ExpressionAttributeValues={":past": {"N": "0"}},
        )


def _fail_nth(operation: str, nth: int) -> tuple[Any, list[int]]:
    """A hook failing the ``nth`` ``operation`` request before it is sent (no retry: the call raises)."""
    calls = [0]

    def fail(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == nth:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    return fail, calls


@pytest.mark.parametrize("nth", [1, 2, 5])
def test_a_creation_cut_after_any_write_is_settled_by_the_redelivery(
    pump: Pump, urls: dict[str, str], nth: int
) -> None:
    """The nth PutItem of a batch run's creation fails (1: the anchor claim, 2: its run item, 5: a claim
    among the others): the records are left, and their redelivery gives each event exactly one run."""
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    fail, calls = _fail_nth("PutItem", nth)
    hooks = settings.dynamodb().meta.events
    hooks.register("before-call.dynamodb.PutItem", fail)
    try:
        first = pump.once("wb-batch", redeliver=False)
    finally:
        hooks.unregister("before-call.dynamodb.PutItem", fail)
    assert calls[0] >= nth
    assert first is not None and len(first.messages) == 10 and len(first.failed) == 10
    assert seen == [], "no run executes before its membership is settled"
    lapse_leases("wb-batch")  # SQS redelivers after the visibility timeout, when the creator's lease lapsed
    pump.mapping("wb-batch").release(first.failed)
    second = pump.once("wb-batch")
    assert second is not None and len(second.messages) == 10 and not second.failed
    owners = assert_each_event_in_exactly_one_run("wb-batch", events)
    runs = runs_of("wb-batch")
    assert all(state == "completed" for state, _, _ in runs.values())
    assert sorted(sorted(ids) for ids in seen) == sorted(members for _, _, members in runs.values())
    assert len(set(owners.values())) == (1 if nth == 1 else 2)
    assert queue_depth(urls["wb-batch"]) == 0


@pytest.mark.parametrize("inline", [True, False])
def test_a_run_item_missing_after_its_anchor_is_written_by_a_delivery_of_the_anchor(
    pump: Pump, urls: dict[str, str], inline: bool
) -> None:
    """The creating attempt died between its anchor claim and its run item; a delivery of the anchor alone
    writes the run item and settles the membership: the anchor and every listed event still unclaimed.
    The list is in the anchor claim (inline) or in member chunk items."""
    events = publish("wb/batch", *[{"n": n} for n in range(4)])
    refs = [ref_of(event) for event in events]
    expires_at = 2_000_000_000
    if not inline:
        batches.put_items([batches.member_item("run_cut", 0, refs, expires_at)])
    packed = batches.pack(refs) if inline else None
    assert batches.claim("wb-batch", "run_cut", refs[0], expires_at, packed) == "run_cut"
    messages = receive_all(urls["wb-batch"])
    anchor = [m for m in messages if event_in(m).sequence_id == refs[0].sequence_id]
    delivery = pump.mapping("wb-batch").deliver(anchor)
    assert not delivery.failed
    assert runs_of("wb-batch") == {"run_cut": ("completed", 1, [ref.sequence_id for ref in refs])}
    assert seen == [[ref.sequence_id for ref in refs]]
    rest = [m for m in messages if m not in anchor]
    assert not pump.mapping("wb-batch").deliver(rest).failed  # finished: acknowledged
    assert seen == [[ref.sequence_id for ref in refs]]
    assert_each_event_in_exactly_one_run("wb-batch", events)


@pytest.mark.parametrize(
    "operation,nth,inline",
    [("PutItem", 1, True), ("PutItem", 2, True), ("PutItem", 3, True), ("BatchWriteItem", 1, False)],
)
def test_a_write_applied_but_unanswered_keeps_its_events_in_the_payload(
    pump: Pump, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch, operation: str, nth: int, inline: bool
) -> None:
    """A member item, the anchor claim, the run item or another claim is applied, its answer lost, and
    botocore sends it again: the claim's (or run item's) condition fails on our own write, which counts."""
    if not inline:
        monkeypatch.setattr(batches, "INLINE_MEMBERS_BYTES", 0)  # members in chunk items
    events = publish("wb/batch", *[{"n": n} for n in range(10)])
    with answer_lost(operation, nth) as seen_calls:
        delivery = pump.once("wb-batch", redeliver=False)
    assert seen_calls[0] > nth
    assert delivery is not None and len(delivery.messages) == 10 and not delivery.failed
    sequence_ids = [event.sequence_id for event in events]
    [(run_id, state)] = runs_of("wb-batch").items()
    assert state == ("completed", 1, sequence_ids)
    assert seen == [sequence_ids], "the payload is the run's membership: every claimed event"
    assert set(assert_each_event_in_exactly_one_run("wb-batch", events).values()) == {run_id}
    assert queue_depth(urls["wb-batch"]) == 0


@pytest.mark.parametrize("inline", [True, False])
def test_members_are_listed_before_any_claim_and_the_run_item_follows_the_anchor(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    if not inline:
        monkeypatch.setattr(batches, "INLINE_MEMBERS_BYTES", 0)
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 5)]
    order: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        item = params.get("Item", {})
        kind = "run" if "lease_owner" in item else "claim" if "run_id" in item else "members"
        order.append(kind + ("+list" if batches.MEMBERS_ATTRIBUTE in item else ""))

    hooks = settings.dynamodb().meta.events
    hooks.register("before-parameter-build.dynamodb.PutItem", note)
    hooks.register("before-parameter-build.dynamodb.BatchWriteItem", note)
    try:
        batches.create_batch_run("wb-batch", "run_order", refs, "owner-1")
    finally:
        hooks.unregister("before-parameter-build.dynamodb.PutItem", note)
        hooks.unregister("before-parameter-build.dynamodb.BatchWriteItem", note)
    if inline:  # the list in the anchor claim and in the run item
        assert order == ["claim+list", "run+list", "claim", "claim", "claim"]
    else:
        assert order == ["members", "claim", "run", "claim", "claim", "claim"]
    assert batches.load_members("run_order") == refs


def test_a_batch_run_of_100_events_lists_them_in_two_items_and_claims_each_in_one_write(
    urls: dict[str, str],
) -> None:
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 101)]
    with count_requests() as requests:
        created = batches.create_batch_run("wb-batch", "run_chunks", refs, "owner-1")
    assert dict(requests.calls) == {"BatchWriteItem": 1, "PutItem": 101}
    assert requests.written_items == 2 + 1 + 100  # two member chunks, the run, a claim per event
    assert created.members == refs and not created.taken and not created.unclaimed
    items = Journal().query_partition("run_chunks")
    assert [item["sk"]["S"] for item in items] == ["member#0000", "member#0001", "run"]
    assert batches.members(items) == refs
    assert set(batches.read_claims("wb-batch", refs).values()) == {"run_chunks"}
    loaded = Journal.decode_partition(items)
    assert loaded is not None and (loaded.run.status, loaded.run.lease_owner) == ("running", "owner-1")


def test_poison_batch_fails_its_run_after_max_attempts_and_reaches_the_dlq(
    pump: Pump, urls: dict[str, str]
) -> None:
    events = publish("wb/poison", *[{"n": n} for n in range(3)])
    deliveries = pump.drain("wb-poison")
    assert [len(d.failed) for d in deliveries] == [3] * (MAX_ATTEMPTS - 1) + [0]
    [(run_id, state)] = runs_of("wb-poison").items()
    assert state == ("failed", MAX_ATTEMPTS, [e.sequence_id for e in events])
    loaded = Journal().load(run_id)
    assert loaded is not None and loaded.run.error is not None
    assert loaded.run.error.message == f"poisoned batch of 3, attempt {MAX_ATTEMPTS}"
    assert queue_depth(dlq_url(urls["wb-poison"])) == 3
    assert queue_depth(urls["wb-poison"]) == 0


def test_events_another_run_claimed_are_taken_and_unlisted(urls: dict[str, str]) -> None:
    refs = [EventRef("wb/batch", n, f"evt_{n}") for n in range(1, 6)]
    for ref in (refs[0], refs[3]):  # the first one: the anchor is the next event
        assert batches.claim("wb-batch", "run_other", ref, 2_000_000_000) == "run_other"
    created = batches.create_batch_run("wb-batch", "run_mine", refs, "owner-1")
    assert created.members == [refs[1], refs[2], refs[4]]
    assert created.taken == {refs[0]: "run_other", refs[3]: "run_other"} and not created.unclaimed
    assert batches.load_members("run_mine") == created.members
    assert batches.read_claims("wb-batch", refs) == {
        **{ref: "run_mine" for ref in created.members},
        refs[0]: "run_other",
        refs[3]: "run_other",
    }


def test_member_refs_round_trip() -> None:
    refs = [EventRef("a/b", 2, "evt_2"), EventRef("a/b", 1, "evt_1")]
    item = batches.member_item("run_x", 0, refs, 0)
    assert batches.members([item, {"pk": {"S": "run#run_x"}, "sk": {"S": "run"}}]) == sorted(refs)

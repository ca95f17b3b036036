"""Publishers racing a ``wait_for_event`` registration: exactly one event per wait step, none missed.

The gap closed here: a publish reserves its sequence id while the topic has no waiter yet, the waiter is
registered and looks back before the publish stores its event, and the publisher (having seen no waiter)
does not match. The registering step then sees an id it has not seen and looks back once more later."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from polos import WorkflowContext, workflow
from polos.app import App
from polos.publish import publishing, waiters
from polos.testing import Stack, local_stack


@workflow(id="race-order")
async def order(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    paid = await ctx.step.wait_for_event("paid", "race/paid", match={"id": payload["id"]})
    return {"n": paid.data["n"], "sequence_id": paid.sequence_id}


APP = App("registration-race", [order])


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(APP) as opened:
        yield opened


def test_an_event_reserved_before_the_registration_but_stored_after_the_look_back_is_delivered(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserved, looked_back = threading.Event(), threading.Event()
    real_execute, real_register = publishing._execute, waiters.WaiterStore.register
    answers: list[dict[str, Any]] = []

    def execute_late(*args: Any) -> Any:
        reserved.set()  # the sequence id is reserved (the topic had no waiter): hold the write
        assert looked_back.wait(30)
        return real_execute(*args)

    def register_after_the_reserve(self: waiters.WaiterStore, waiter: waiters.Waiter, until: Any) -> int:
        # the step was reached (its anchor read); now a publish reserves its id before the waiter is stored
        if not reserved.is_set():
            publisher.start()
            assert reserved.wait(30)
        return real_register(self, waiter, until)

    publisher = threading.Thread(
        target=lambda: answers.append(stack.publish("race/paid", [{"data": {"id": "a", "n": 1}}]))
    )
    monkeypatch.setattr(publishing, "_execute", execute_late)
    monkeypatch.setattr(waiters.WaiterStore, "register", register_after_the_reserve)
    run_id = stack.invoke("race-order", {"id": "a"})
    stack.drain()  # registered, looked back (nothing stored yet), suspended
    looked_back.set()
    publisher.join(30)
    assert answers and answers[0]["sequence_ids"] == [1]
    run = stack.run(run_id)
    assert run["status"] == "waiting", run  # the publisher saw no waiter: only the recheck finds it
    stack.advance(seconds=waiters.recheck_delay() + 1)
    stack.drain()
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["result"] == {"n": 1, "sequence_id": 1}, run


def test_concurrent_publishers_racing_registrations_deliver_exactly_one_event_per_wait_step(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 6
    real_register = waiters.WaiterStore.register
    publishers: list[threading.Thread] = []

    def publish(key: str) -> None:
        for _ in range(2):  # the second is the client's retry: stores nothing new
            stack.publish("race/paid", [{"data": {"id": key, "n": key}}], idempotency_key=f"pay-{key}")

    def racing_register(self: waiters.WaiterStore, waiter: waiters.Waiter, until: Any) -> int:
        # each registration races its own event's publisher and the others' (after its anchor was read)
        key = waiter.match["id"] if waiter.match else ""
        if any(thread.name == key for thread in publishers):  # a recheck registers again: no new event
            return real_register(self, waiter, until)
        thread = threading.Thread(target=publish, args=(key,), name=key)
        publishers.append(thread)
        thread.start()
        return real_register(self, waiter, until)

    monkeypatch.setattr(waiters.WaiterStore, "register", racing_register)
    run_ids = {str(i): stack.invoke("race-order", {"id": str(i)}) for i in range(runs)}
    stack.drain()
    for thread in publishers:
        thread.join(60)
    assert len(publishers) == runs
    stack.drain()
    stack.advance(seconds=waiters.recheck_delay() + 1)  # the rechecks of registrations that saw a gap
    stack.drain()
    events = stack.events("race/paid")
    assert sorted(event["data"]["id"] for event in events) == sorted(run_ids)  # each stored once
    by_key = {event["data"]["id"]: event["sequence_id"] for event in events}
    for key, run_id in run_ids.items():
        run = stack.run(run_id)
        assert run["status"] == "completed", run
        assert run["result"] == {"n": key, "sequence_id": by_key[key]}  # its own event, exactly one

"""``polos demo``: the documentation's examples, end to end over HTTP against a local stack.

Each scenario publishes (or invokes) through :class:`~polos.PolosClient` exactly like a user would, and
states the runs it expects: which workflow, triggered how, ending ``completed`` with how many steps.
The demo then waits for those runs and prints what each one did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from polos import PolosClient
from polos.app import App

WAIT_SECONDS = 60.0
DEMO_TRIAL_SECONDS = 12  # past the 10 s a wait may sleep in its attempt: the run really waits
POLL_SECONDS = 0.2
SPLIT_BATCH_WAIT_SECONDS = 60.0  # the longest batching window of the example app


@dataclass
class Expected:
    """A run the demo waits for: found by workflow and the events that triggered it (or its run id)."""

    what: str
    workflow_id: str
    trigger: str
    steps: int
    event_ids: list[str] = field(default_factory=list)
    run_id: str | None = None
    run: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.run is not None and self.run["status"] in ("completed", "failed")

    @property
    def ok(self) -> bool:
        run = self.run
        return (
            run is not None
            and run["status"] == "completed"
            and run["trigger"]["type"] == self.trigger
            and len(run["steps"]) == self.steps
            and all(step["status"] == "completed" for step in run["steps"])
        )


def _event_ids(answer: dict[str, Any]) -> list[str]:
    return [event["id"] for event in answer["events"]]


class Demo:
    """Runs the scenarios against ``client`` and collects the runs they should produce."""

    def __init__(self, client: PolosClient, app: App, api_key: str, out: TextIO, *, pollers: int = 1) -> None:
        self.client = client
        self.app = app
        self.api_key = api_key
        self.out = out
        # Several pollers per queue (`--aws-faults pollers`) may split a batch between them, each waiting
        # out its own batching window, as Lambda's do: each event then lands in exactly one of the runs.
        self.batches_may_split = pollers > 1
        self.wait_seconds = WAIT_SECONDS + (SPLIT_BATCH_WAIT_SECONDS if self.batches_may_split else 0)
        self.expected: list[Expected] = []
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        self.out.write(f"→ {text}\n")
        self.out.flush()

    async def signup(self) -> None:
        self.say("publish a signup event to user/signup (user-signup-handler: welcome email, sample data)")
        answer = await self.client.publish(
            "user/signup",
            [{"data": {"user_id": "user_ada", "email": "ada@example.com"}, "event_type": "user_created"}],
        )
        self.expected.append(Expected("signup event", "user-signup-handler", "event", 2, _event_ids(answer)))

    async def notification(self) -> None:
        self.say("publish a notification to notifications/new (notification-handler)")
        data = {"user_id": "user_456", "message": "You have a new message"}
        answer = await self.client.publish(
            "notifications/new", [{"data": data, "event_type": "notification_created"}]
        )
        self.expected.append(
            Expected("notification event", "notification-handler", "event", 1, _event_ids(answer))
        )

    async def create_user(self) -> None:
        self.say("invoke create_user directly; its publish_event step triggers user-signup-handler")
        workflow = self.app.get("create_user")
        if workflow is None:
            raise RuntimeError(
                f"app {self.app.name!r} has no workflow 'create_user' (the demo needs the example app)"
            )
        handle = await workflow.invoke(self.client, {"email": "grace@example.com", "name": "Grace Hopper"})
        invoked = Expected("direct invocation", "create_user", "invoke", 2, run_id=handle.run_id)
        self.expected.append(invoked)
        await handle.result(timeout=WAIT_SECONDS)
        run = await self.client.get_run(handle.run_id)
        published = next(step for step in run["steps"] if step["key"] == "publish_signup")["result"]
        self.expected.append(
            Expected("signup published by create_user", "user-signup-handler", "event", 2, [published["id"]])
        )

    async def analytics(self) -> None:
        self.say(
            "publish 10 analytics events in one request: batch-processor takes batches of 10 or 30 s, so "
            "this batch triggers on its size, without waiting for the window"
        )
        events = [{"data": {"action": "click" if i % 2 else "view", "n": i}} for i in range(10)]
        answer = await self.client.publish("analytics.events", events)
        self.expected.append(
            Expected("10 analytics events", "batch-processor", "batch", 1, _event_ids(answer))
        )

    async def orders(self) -> None:
        self.say(
            "publish 5 orders to order/created: immediate-handler runs once per order; batched-handler "
            "(batches of 5 or 60 s) runs once, triggered by the batch size"
        )
        answer = await self.client.publish(
            "order/created", [{"data": {"order_id": f"ord_{i}"}} for i in range(1, 6)]
        )
        ids = _event_ids(answer)
        self.expected += [
            Expected(f"order ord_{i + 1}", "immediate-handler", "event", 1, [ids[i]]) for i in range(5)
        ]
        self.expected.append(Expected("5 orders", "batched-handler", "batch", 1, ids))

    async def high_priority(self) -> None:
        self.say(
            "publish a high_priority and a low_priority event to notifications/system (only the first alerts)"
        )
        answer = await self.client.publish(
            "notifications/system",
            [
                {"data": {"service": "db", "message": "disk full"}, "event_type": "high_priority"},
                {"data": {"service": "web", "message": "slow page"}, "event_type": "low_priority"},
            ],
        )
        high, low = _event_ids(answer)
        self.expected.append(Expected("high_priority event", "high-priority-handler", "event", 1, [high]))
        self.expected.append(
            Expected("low_priority event (skipped)", "high-priority-handler", "event", 0, [low])
        )

    async def trial_reminder(self) -> None:
        self.say(
            f"invoke trial-reminder with a {DEMO_TRIAL_SECONDS} s trial: the run waits without holding "
            "anything (status waiting) and is woken when the trial is over"
        )
        workflow = self.app.get("trial-reminder")
        if workflow is None:
            raise RuntimeError(f"app {self.app.name!r} has no workflow 'trial-reminder'")
        trial = {"user_id": "u_ada", "trial_seconds": DEMO_TRIAL_SECONDS}
        handle = await workflow.invoke(self.client, trial)
        what = f"waits {DEMO_TRIAL_SECONDS} s, then resumes"
        self.expected.append(Expected(what, "trial-reminder", "invoke", 3, run_id=handle.run_id))

    def _workflow(self, workflow_id: str) -> Any:
        workflow = self.app.get(workflow_id)
        if workflow is None:
            raise RuntimeError(f"app {self.app.name!r} has no workflow {workflow_id!r}")
        return workflow

    async def _until_waiting(self, run_id: str, step: str) -> None:
        """Poll until the run waits in ``step`` (what comes earlier than that is not awaited by it)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            run = await self.client.get_run(run_id)
            if run["status"] == "waiting" and run.get("waiting_for", {}).get("step") == step:
                return
            if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} does not wait in step {step!r}: {run}")
            await asyncio.sleep(POLL_SECONDS)

    async def approval(self) -> None:
        self.say(
            "invoke expense-approval: the run suspends (status waiting) until it is resumed over HTTP "
            "with POST /api/v1/runs/{run_id}/resume; the resume data is the step's result"
        )
        request = {"request_id": "exp_42", "amount": 120.0}
        handle = await self._workflow("expense-approval").invoke(self.client, request)
        await self._until_waiting(handle.run_id, "approval")
        await self.client.resume(handle.run_id, "approval", {"approved": True, "by": "bob"})
        what = "suspended, approved by a resume"
        self.expected.append(Expected(what, "expense-approval", "invoke", 3, run_id=handle.run_id))

    async def payment(self) -> None:
        self.say(
            "invoke order-fulfillment: the run waits for a payment/succeeded event with its order_id; "
            "a payment of another order does not wake it, its own does; then it waits for a child run "
            "(send-receipt)"
        )
        handle = await self._workflow("order-fulfillment").invoke(self.client, {"order_id": "ord_77"})
        await self._until_waiting(handle.run_id, "payment")
        await self.client.publish(
            "payment/succeeded",
            [
                {"data": {"order_id": "ord_76", "amount": 5.0}},
                {"data": {"order_id": "ord_77", "amount": 42.0}},
            ],
        )
        what = "waits for its payment event"
        self.expected.append(Expected(what, "order-fulfillment", "invoke", 3, run_id=handle.run_id))
        child = await self._child_of(handle.run_id)
        self.expected.append(
            Expected("child run of the order run", "send-receipt", "invoke", 1, run_id=child)
        )

    async def _child_of(self, run_id: str) -> str:
        """The first child run the run started (its view lists them once started)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            run = await self.client.get_run(run_id)
            if run.get("children"):
                return str(run["children"][0])
            if run["status"] not in ("queued", "running", "waiting") or time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} started no child run: {run}")
            await asyncio.sleep(POLL_SECONDS)

    async def external_publish(self) -> None:
        self.say(
            "publish from an external system with httpx (the documentation's snippet) to order.completed"
        )
        import httpx  # a dev dependency: only the demo's external-publish scenario needs it

        base_url = self.client.base_url

        # The documentation's snippet, pointed at the local API with the local key.
        async def publish_event(topic: str, data: dict[str, Any]) -> None:
            """Publish an event via API."""
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{base_url}/api/v1/events/publish",
                    headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
                    json={"topic": topic, "events": [{"data": data, "event_type": "custom_event"}]},
                )
                response.raise_for_status()

        await publish_event("order.completed", {"order_id": "ord_123", "total": 99.99})
        stored = await self.client.list_events("order/completed")
        if [event["data"] for event in stored["events"]] != [{"order_id": "ord_123", "total": 99.99}]:
            raise RuntimeError(f"the externally published event is not stored as expected: {stored}")
        self.notes.append(
            "order.completed: 1 event stored as order/completed #1 (no workflow subscribes to it)"
        )

    async def run_all(self) -> None:
        scenarios: list[Callable[[], Awaitable[None]]] = [
            self.signup,
            self.notification,
            self.create_user,
            self.analytics,
            self.orders,
            self.high_priority,
            self.external_publish,
            self.trial_reminder,
            self.approval,
            self.payment,
        ]
        for scenario in scenarios:
            await scenario()
        await self.wait()

    async def _runs_of(self, workflow_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.client.list_runs(workflow_id=workflow_id, cursor=cursor)
            runs += page["runs"]
            cursor = page["next_cursor"]
            if cursor is None:
                return runs

    async def wait(self) -> None:
        """Poll until every expected run is found and finished (or ``wait_seconds`` pass)."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            pending = [e for e in self.expected if not e.finished]
            if not pending or time.monotonic() > deadline:
                return
            for workflow_id in sorted({e.workflow_id for e in pending}):
                runs = await self._runs_of(workflow_id)
                for expected in (e for e in pending if e.workflow_id == workflow_id):
                    if expected.run_id is None and not self._find(expected, runs):
                        continue  # not (yet) one run holding exactly these events
                    expected.run = await self.client.get_run(str(expected.run_id))
            await asyncio.sleep(POLL_SECONDS)

    def _find(self, expected: Expected, runs: list[dict[str, Any]]) -> bool:
        """Set ``expected.run_id`` to the one run holding exactly its events; with batches that may split,
        runs that hold each of them exactly once also do (one expected run each)."""
        wanted = sorted(expected.event_ids)
        found = [r for r in runs if set(r["trigger"]["event_ids"]) & set(wanted)]
        held = sorted(event_id for run in found for event_id in run["trigger"]["event_ids"])
        may_split = self.batches_may_split and expected.trigger == "batch"
        if held != wanted or (len(found) > 1 and not may_split):
            return False
        expected.run_id, expected.event_ids = found[0]["run_id"], found[0]["trigger"]["event_ids"]
        at = self.expected.index(expected)
        for part in found[1:]:
            events, what = part["trigger"]["event_ids"], f"{expected.what} (split by the pollers)"
            split = Expected(what, expected.workflow_id, "batch", expected.steps, events, part["run_id"])
            self.expected.insert(at + 1, split)
        return True


def _duration(run: dict[str, Any]) -> str:
    started = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(run["updated_at"].replace("Z", "+00:00"))
    return f"{(ended - started).total_seconds():.2f} s"


def table(expected: list[Expected]) -> str:
    """The runs as a fixed-width table (workflow, trigger, status, steps, duration, what, check)."""
    header = ("WORKFLOW", "TRIGGER", "STATUS", "STEPS", "DURATION", "WHAT", "")
    rows = [header]
    for e in expected:
        run = e.run
        if run is None:
            rows.append((e.workflow_id, e.trigger, "not found", "-", "-", e.what, "FAIL"))
            continue
        count = len(run["trigger"]["event_ids"])
        trigger = run["trigger"]["type"] + (f" x{count}" if count > 1 else "")
        steps = ", ".join(step["key"] for step in run["steps"]) or "-"
        status = run["status"]
        if run.get("error"):
            status += f" ({run['error']['type']}: {run['error']['message']})"
        rows.append((e.workflow_id, trigger, status, steps, _duration(run), e.what, "ok" if e.ok else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )

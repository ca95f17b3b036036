"""``polos.events`` (also ``polos.features.events``): publish, batch_publish, stream_topic, and
stream_workflow seeing a run's ``suspend_<key>`` events and ending with the run (issue 25)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers.stack_polos import StackPolos
from polos import WorkflowContext, events, workflow
from polos.app import App
from polos.features import events as feature_events
from polos.testing import Stack, local_stack


@workflow(id="form")
async def form(ctx: WorkflowContext, payload: dict) -> dict:  # type: ignore[type-arg]
    first = await ctx.step.suspend("personal", data={"step": 1, "form": payload["form"]})
    second = await ctx.step.suspend("address", data={"step": 2})
    return {"name": first["name"], "city": second["city"]}


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(App("events-surface", [form])) as opened:
        yield opened


def test_features_events_is_the_same_module_surface() -> None:
    assert feature_events.stream_workflow is events.stream_workflow
    assert feature_events.EventData is events.EventData


def test_publish_and_batch_publish_answer_sequence_ids_and_stream_topic_sees_them(stack: Stack) -> None:
    polos = StackPolos(stack)

    async def scenario() -> list[tuple[str | None, dict[str, object]]]:
        first = await events.publish(
            client=polos, topic="orders/created", event_data=events.EventData(event_type="old", data={"n": 0})
        )
        assert first == 1
        stream = events.stream_topic(polos, "orders/created", poll_interval=0.01)  # from now: skips n=0
        reader = asyncio.ensure_future(anext(stream))
        assert await asyncio.to_thread(polos.read_answered.wait, 30)  # it has read where "now" is
        ids = await events.batch_publish(
            client=polos,
            topic="orders.created",
            events=[events.EventData(event_type="created", data={"n": n}) for n in (1, 2)],
        )
        assert ids == [2, 3]
        seen = [await reader, await anext(stream)]
        await stream.aclose()
        return [(event.event_type, event.data) for event in seen]

    assert asyncio.run(scenario()) == [("created", {"n": 1}), ("created", {"n": 2})]


@pytest.mark.timeout(60)  # a stream that never sees its suspend waits for the run's end: forever
def test_stream_workflow_sees_each_suspend_once_and_ends_with_the_run(stack: Stack) -> None:
    polos = StackPolos(stack)

    async def scenario() -> list[list[str]]:
        handle = await form.invoke(polos, {"form": "F-1"})
        streams: list[list[str]] = []
        for key, data in (("personal", {"name": "Ada"}), ("address", {"city": "Paris"})):
            # Each stream starts after the run suspended (the worker drained on the first read): the
            # pending suspend event of the step still waiting is yielded, not the one already resumed.
            seen: list[str] = []
            async for event in events.stream_workflow(
                polos, handle.root_workflow_id, handle.id, poll_interval=0
            ):
                seen.append(str(event.event_type))
                if event.event_type == f"suspend_{key}":
                    assert event.topic == f"workflow/form/{handle.id}"
                    # The suspend event does not resume (or count as resuming) the step.
                    assert stack.run(handle.id)["status"] == "waiting"
                    await polos.resume(
                        suspend_workflow_id=handle.root_workflow_id,
                        suspend_execution_id=handle.id,
                        suspend_step_key=key,
                        data=data,
                    )
                    if key == "personal":
                        break
            streams.append(seen)  # the last stream ran on until the run ended
        run = await polos.get_run(handle.id)
        assert (run["status"], run["result"]) == ("completed", {"name": "Ada", "city": "Paris"})
        assert [step["result"] for step in run["steps"]] == [{"name": "Ada"}, {"city": "Paris"}]
        return streams

    assert asyncio.run(scenario()) == [["suspend_personal"], ["suspend_address"]]
    events_of_run = stack.events(f"workflow/form/{stack.runs('form')[0]['run_id']}")
    # Published once each, however often the run replayed past its suspend steps.
    assert [(e["event_type"], e["data"]) for e in events_of_run] == [
        ("suspend_personal", {"step": 1, "form": "F-1"}),
        ("suspend_address", {"step": 2}),
    ]

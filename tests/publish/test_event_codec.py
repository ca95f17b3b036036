"""The event item codec: data stored as JSON text, or zlib-compressed binary when that pays; both read back
the same through every reader (listing, waiters' look-back, batch members, client-id claims, HTTP API)."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fanapp import TOPIC, provision_fan_app
from helpers.waiters import published_before_the_waiter_registers
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.item_size import item_size
from polos.payloads import EventItem
from polos.publish import events as store
from polos.publish.events import EventRef, EventStore, decode_event, encode_event, event_pk
from polos.publish.publishing import (
    MAX_DATA_BYTES,
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    NewEvent,
    publish_events,
)
from polos.publish.waiters import WaiterStore
from polos.testing import Stack, local_stack
from polos.topics import MAX_TOPIC_LENGTH

from bench.workload import Shape, sample_event
from infra.metering.units import WRITE_UNIT_BYTES

ASCII = "".join(c for c in string.printable[:95] if c not in '"\\')


def random_text(size: int, alphabet: str, seed: int = 7) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size))


def order(n: int) -> dict[str, Any]:
    """The bench's headline event data: 1 KB of compact JSON, its note random base64 tokens."""
    data: dict[str, Any] = sample_event(n)["data"]
    return data


def compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def event_of(data: Any, **fields: Any) -> EventItem:
    values: dict[str, Any] = {
        "id": f"evt_{'0' * 26}",
        "sequence_id": 12_345,
        "topic": Shape(1, 1, False).topic,  # the bench headline's topic
        "event_type": "order_created",
        "data": data,
        "created_at": datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    }
    return EventItem(**(values | fields))


NESTED: dict[str, Any] = {"leaf": "ü" * 300}
for _ in range(90):
    NESTED = {"n": NESTED, "list": [1, 2.5, None, True]}

CASES: dict[str, tuple[Any, str]] = {  # data, and the attribute it is stored in
    "empty dict": ({}, "data"),
    "small": ({"order_id": "o-1", "amount": 12.5}, "data"),
    "compressible 1 KB": ({"rows": [{"sku": f"SKU-{i}", "qty": 1} for i in range(40)]}, "data_z"),
    "1 KB order, base64 note": (order(3), "data_z"),
    "1 KB random ASCII": ({"note": random_text(1024, ASCII)}, "data_z"),
    "300 B random ASCII (saves under an eighth)": ({"note": random_text(300, ASCII)}, "data"),
    "unicode": ({"text": 'ü\u0000\n"\\ 東京 🎉 \u202e' * 40, "emoji🎉": ["é", {"ß": "ẞ"}]}, "data_z"),
    "nested 90 levels": (NESTED, "data_z"),
    "numbers": ({"float": 0.1, "big": 10**30, "neg": -1e-7, "list": list(range(200))}, "data_z"),
    "200 KB": ({"blob": random_text(200 * 1024, string.ascii_letters + string.digits + "+/")}, "data_z"),
    "256 KB limit, random ASCII": ({"blob": random_text(MAX_DATA_BYTES - 20, ASCII)}, "data_z"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_event_data_round_trips_in_the_form_that_pays(case: str) -> None:
    data, attribute = CASES[case]
    event = event_of(data)
    item = encode_event(event, expires_at=1_800_000_000)
    assert attribute in item and ({"data", "data_z"} - {attribute}).isdisjoint(item)
    assert decode_event(item) == event and decode_event(item).data == data
    if attribute == "data":  # readable as it is, e.g. in the console
        assert json.loads(item["data"]["S"]) == data
    else:
        assert len(item["data_z"]["B"]) <= len(compact(data)) * 7 // 8  # type: ignore[arg-type]
        assert item_size(item) < item_size({**item, "data": {"S": compact(data).decode()}})


def test_an_item_in_the_old_text_form_still_decodes() -> None:
    """Items written before data was compressed (or by an older version during a redeploy) hold ``data``."""
    data = order(5)
    old: dict[str, Any] = {
        "pk": {"S": "topic#bench/s1-k1-single"},
        "sk": {"S": "00000000000000000042"},
        "id": {"S": "evt_old"},
        "data": {"S": compact(data).decode()},
        "created_at": {"S": "2025-01-02T03:04:05.678000Z"},
        "expires_at": {"N": "1800000000"},
    }
    decoded = decode_event(old)
    assert (decoded.data, decoded.sequence_id, decoded.event_type) == (data, 42, None)


def test_a_1kb_event_is_stored_in_one_write_unit() -> None:
    """The bench's headline event (random base64 note: no friendlier than real data), 200 draws of it."""
    sizes = []
    for n in range(200):
        data = order(n)
        assert len(compact(data)) == 1024
        sizes.append(item_size(encode_event(event_of(data), expires_at=int(time.time()) + 30 * 86400)))
    assert max(sizes) <= WRITE_UNIT_BYTES


def test_transactions_are_capped_by_the_real_size_of_their_items() -> None:
    """Items with every field at its longest (4-byte characters where allowed), compressed or not."""
    for data in ({"x": 1}, {"blob": random_text(MAX_DATA_BYTES - 20, ASCII)}, order(1), NESTED):
        event = event_of(
            data,
            topic="t" * MAX_TOPIC_LENGTH,
            id="i" * MAX_EVENT_ID_LENGTH,
            event_type="🎉" * MAX_EVENT_TYPE_LENGTH,
            sequence_id=10**19,
        )
        item = encode_event(event, expires_at=int(time.time()) + 10 * 365 * 86400)
        claim = store._claim(event, expires_at=int(time.time()))
        assert store._pair_size((event, item, claim)) == item_size(item) + item_size(claim) > 0


@pytest.fixture
def queues(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return provision_fan_app(tmp_path, monkeypatch)


def raw_item(sequence_id: int) -> dict[str, Any]:
    item: dict[str, Any] = settings.dynamodb().get_item(
        TableName=settings.get_settings().events_table,
        Key={"pk": {"S": event_pk(TOPIC, sequence_id)}, "sk": {"S": str(sequence_id).zfill(20)}},
        ConsistentRead=True,
    )["Item"]
    return item


def every_reader(published: list[EventItem]) -> dict[str, list[EventItem]]:
    """The stored events as each reader of event items returns them."""
    event_store = EventStore()
    claimed = [event.id for event in published if not event.id.startswith("evt_")]
    return {
        "listing": event_store.list_topic(TOPIC, 0, 100).events,
        "waiters' look-back": [event for _, event in WaiterStore().look_back(TOPIC, 0) if event is not None],
        "batch members (get_many)": event_store.get_many(
            [EventRef(e.topic, e.sequence_id, e.id) for e in published]
        ),
        "client id claims": [
            event_store.find_claimed(TOPIC, claimed)[event.id] if event.id in claimed else event
            for event in published
        ],
    }


def test_every_reader_returns_the_data_published_compressed_or_not(queues: dict[str, str]) -> None:
    datas = [order(1), {"small": "ü"}, {"note": random_text(1024, ASCII)}, CASES["unicode"][0]]
    new = [NewEvent(id=None, data=data, event_type="order_created") for data in datas]
    new[2] = NewEvent(id="client-2", data=datas[2])
    published = publish_events(TOPIC, new, idempotency_key="codec-1").events
    assert [e.data for e in published] == datas
    stored = [raw_item(e.sequence_id) for e in published]
    assert ["data_z" in item for item in stored] == [True, False, True, True]
    assert item_size(stored[0]) <= WRITE_UNIT_BYTES
    for reader, found in every_reader(published).items():
        assert found == published, reader
    replayed = publish_events(TOPIC, new, idempotency_key="codec-1").events  # the stored events, read back
    assert replayed == published


def test_items_of_the_old_form_are_read_next_to_new_ones(queues: dict[str, str]) -> None:
    published = publish_events(TOPIC, [NewEvent(id=None, data=order(n)) for n in range(3)]).events
    table = settings.get_settings().events_table
    old = raw_item(2)  # rewritten as the code before compression stored it
    old["data"] = {"S": compact(published[1].data).decode()}
    del old["data_z"]
    settings.dynamodb().put_item(TableName=table, Item=old)
    assert "data_z" in raw_item(1) and "data" in raw_item(2)
    for reader, found in every_reader(published).items():
        assert found == published, reader


# --- through the HTTP API and the worker ------------------------------------------------------------------

PAID = "codec/paid"
ORDERS = "codec/orders"


@workflow(id="codec-batch", trigger_on_event=ORDERS, batch_size=3, batch_timeout_seconds=1)
async def codec_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> list[Any]:
    return [event.data for event in payload.events]


@workflow(id="codec-single", trigger_on_event=ORDERS)
async def codec_single(ctx: WorkflowContext, payload: EventPayload) -> Any:
    return payload.data


@workflow(id="codec-wait")
async def codec_wait(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    paid = await ctx.step.wait_for_event("paid", PAID, match={"order_id": payload["id"]})
    return paid.data


@pytest.fixture
def stack() -> Iterator[Stack]:
    with local_stack(App("codec", [codec_batch, codec_single, codec_wait])) as opened:
        yield opened


def execution(stack: Stack, run_id: str) -> dict[str, Any]:
    """``GET /api/v1/executions/{id}``: the run with its input (events read from the store)."""
    answer = stack.request("GET", f"/api/v1/executions/{run_id}")
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.body
    return body


def test_the_api_listing_runs_batches_and_waits_see_the_published_data(stack: Stack) -> None:
    datas = [order(n) for n in range(3)]
    stack.publish(ORDERS, [{"data": data} for data in datas])
    stack.drain(skip_batch_windows=True)
    assert [event["data"] for event in stack.events(ORDERS)] == datas  # GET /api/v1/events
    (batch,) = [execution(stack, run["run_id"]) for run in stack.runs("codec-batch")]
    assert batch["status"] == "completed" and batch["result"] == datas
    assert [event["data"] for event in batch["payload"]["events"]] == datas  # read from the store
    singles = [execution(stack, run["run_id"]) for run in stack.runs("codec-single")]
    assert sorted(json.dumps(run["result"]) for run in singles) == sorted(json.dumps(d) for d in datas)
    assert all(run["payload"]["data"] == run["result"] for run in singles)

    paid = dict(order(9), order_id="R")
    with published_before_the_waiter_registers(stack, PAID, paid):
        run_id = stack.invoke("codec-wait", {"id": "R"})
        stack.drain()
    assert stack.run(run_id)["result"] == paid

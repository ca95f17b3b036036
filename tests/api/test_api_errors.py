"""Every status code of the events API, and a corpus of bad requests that each change nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from helpers.apigw import ApiAnswer, gateway_call, http_event
from helpers.aws_state import snapshot
from polos.api.keys import KeyStore
from polos.publish.events import EventStore

PUBLISH = "/api/v1/events/publish"
EVENTS = "/api/v1/events"
KB = 1024


def publish(api_key: str, body: Any = None, **kwargs: Any) -> ApiAnswer:
    return gateway_call(http_event("POST", PUBLISH, body=body, api_key=api_key, **kwargs))


def body_of(events: list[Any], topic: Any = "user/signup", **extra: Any) -> dict[str, Any]:
    return {"topic": topic, "events": events, **extra}


def raw(text: str | bytes) -> Callable[[str], dict[str, Any]]:
    return lambda key: http_event("POST", PUBLISH, raw_body=text, api_key=key)


def post(body: Any, **kwargs: Any) -> Callable[[str], dict[str, Any]]:
    return lambda key: http_event("POST", PUBLISH, body=body, api_key=key, **kwargs)


def get(query: dict[str, str]) -> Callable[[str], dict[str, Any]]:
    return lambda key: http_event("GET", EVENTS, query=query, api_key=key)


@pytest.fixture
def api_key(stack: dict[str, str]) -> str:
    """A valid key of the example stack's keys table."""
    return KeyStore().create("tests")[1]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "ünïcødé ✓"}
    for level in range(depth):
        value = {f"l{level}": value}
    return value


ONE = [{"data": {"a": 1}}]
# (case id, request for a valid key, status, words the error message must contain)
CORPUS: list[tuple[str, Callable[[str], dict[str, Any]], int, str]] = [
    ("malformed json", raw('{"topic": "user/signup", "events": ['), 400, "not valid JSON"),
    ("trailing garbage", raw('{"topic": "a", "events": []} x'), 400, "not valid JSON"),
    (
        "NaN is not JSON",
        raw('{"topic": "a", "events": [{"data": {"x": NaN}}]}'),
        400,
        "NaN is not valid JSON",
    ),
    ("nested too deeply to parse", raw("[" * 100_000 + "]" * 100_000), 400, "not valid JSON"),
    ("not UTF-8", lambda key: http_event("POST", PUBLISH, raw_body=b"\xff\xfe{", api_key=key), 400, "UTF-8"),
    ("body is an array", raw("[]"), 400, "body must be a JSON object"),
    ("body is a string", raw('"hello"'), 400, "body must be a JSON object"),
    ("no body", lambda key: http_event("POST", PUBLISH, api_key=key), 400, "body: field required"),
    ("text content type", post(body_of(ONE), headers={"Content-Type": "text/plain"}), 400, "Content-Type"),
    ("missing topic", post({"events": ONE}), 400, "topic: field required"),
    ("missing events", post({"topic": "a"}), 400, "events: field required"),
    ("topic is a number", post(body_of(ONE, topic=5)), 400, "topic: Input should be a valid string"),
    ("topic is null", post(body_of(ONE, topic=None)), 400, "topic: Input should be a valid string"),
    ("empty topic", post(body_of(ONE, topic="")), 400, "topic must not be empty"),
    (
        "over-long topic",
        post(body_of(ONE, topic="t" * 257)),
        400,
        "topic is 257 characters long; at most 256",
    ),
    ("topic with a space", post(body_of(ONE, topic="user signup")), 400, "topic 'user signup' is invalid"),
    (
        "topic with empty segment",
        post(body_of(ONE, topic="user//signup")),
        400,
        "topic 'user//signup' is invalid",
    ),
    ("topic with a wildcard", post(body_of(ONE, topic="user/*")), 400, "is invalid"),
    ("topic path traversal", post(body_of(ONE, topic="../etc")), 400, "is invalid"),
    ("unknown top-level field", post(body_of(ONE, priority="high")), 400, "priority: unknown field"),
    ("events is an object", post(body_of({"data": {}})), 400, "events: Input should be a valid list"),
    ("zero events", post(body_of([])), 400, "events must hold 1 to 1000 events; got 0"),
    ("1001 events", post(body_of([{"data": {}}] * 1001)), 400, "events must hold 1 to 1000 events; got 1001"),
    ("event is a number", post(body_of([{"data": {}}, 7])), 400, "events[1]"),
    ("data missing", post(body_of([{"event_type": "x"}])), 400, "events[0].data: field required"),
    ("data is a list", post(body_of([{"data": {}}, {"data": {}}, {"data": [1, 2]}])), 400, "events[2].data"),
    (
        "data is a string",
        post(body_of([{"data": "hi"}])),
        400,
        "events[0].data: Input should be a valid dict",
    ),
    ("data is null", post(body_of([{"data": None}])), 400, "events[0].data"),
    (
        "data nested too deep",
        post(body_of([{"data": nested(100)}])),
        400,
        "events[0].data is nested more than 100",
    ),
    (
        "unknown event field",
        post(body_of([{"data": {}}] * 2 + [{"data": {}, "foo": 1}])),
        400,
        "events[2].foo: unknown",
    ),
    ("event_type is a number", post(body_of([{"data": {}, "event_type": 3}])), 400, "events[0].event_type"),
    (
        "event_type empty",
        post(body_of([{"data": {}, "event_type": ""}])),
        400,
        "events[0].event_type must be",
    ),
    (
        "event_type too long",
        post(body_of([{"data": {}, "event_type": "e" * 257}])),
        400,
        "1 to 256 characters",
    ),
    (
        "id is a number",
        post(body_of([{"data": {}, "id": 12}])),
        400,
        "events[0].id: Input should be a valid string",
    ),
    (
        "id with a space",
        post(body_of([{"data": {}, "id": "a b"}])),
        400,
        "events[0].id must be 1 to 128 characters",
    ),
    ("id too long", post(body_of([{"data": {}, "id": "i" * 129}])), 400, "events[0].id must be 1 to 128"),
    ("id empty", post(body_of([{"data": {}, "id": ""}])), 400, "events[0].id must be"),
    (
        "id repeated",
        post(body_of([{"data": {}, "id": "x"}, {"data": {}, "id": "x"}])),
        400,
        "events[1].id repeats",
    ),
    (
        "event 3 over 256 KB",
        post(body_of([{"data": {}}] * 3 + [{"data": {"blob": "x" * (256 * KB)}}])),
        413,
        "events[3].data is 262155 bytes as compact JSON; at most 262144",
    ),
    (
        "multi-byte event over 256 KB",
        post(body_of([{"data": {"blob": "é" * (128 * KB + 1)}}])),
        413,
        "events[0].data is",
    ),
    (
        "body over 6 MB",
        post(body_of([{"data": {"blob": "x" * (200 * KB)}}] * 31)),
        413,
        "at most 6291456",
    ),
    (
        "Idempotency-Key too long",
        post(body_of(ONE), headers={"Idempotency-Key": "k" * 256}),
        400,
        "Idempotency-Key header",
    ),
    (
        "Idempotency-Key empty",
        post(body_of(ONE), headers={"Idempotency-Key": ""}),
        400,
        "Idempotency-Key header",
    ),
    ("list without topic", get({}), 400, "topic: field required"),
    ("list with bad topic", get({"topic": "a b"}), 400, "topic 'a b' is invalid"),
    (
        "list limit 0",
        get({"topic": "a", "limit": "0"}),
        400,
        "limit: Input should be greater than or equal to 1",
    ),
    (
        "list limit 1001",
        get({"topic": "a", "limit": "1001"}),
        400,
        "limit: Input should be less than or equal to 1000",
    ),
    (
        "list limit not a number",
        get({"topic": "a", "limit": "ten"}),
        400,
        "limit: Input should be a valid integer",
    ),
    ("list negative cursor", get({"topic": "a", "after_sequence_id": "-1"}), 400, "after_sequence_id"),
    (
        "list cursor too big",
        get({"topic": "a", "after_sequence_id": "1" + "0" * 20}),
        400,
        "after_sequence_id",
    ),
    ("unknown route", lambda key: http_event("GET", "/api/v1/nothing", api_key=key), 404, "no route for GET"),
    (
        "wrong method",
        lambda key: http_event("GET", PUBLISH, api_key=key),
        404,
        "no route for GET /api/v1/events/publish",
    ),
    (
        "no Authorization",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE)),
        401,
        "missing Authorization",
    ),
    (
        "Basic instead of Bearer",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE), headers={"Authorization": f"Basic {key}"}),
        401,
        "must be 'Bearer <api key>'",
    ),
    (
        "Bearer without key",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE), headers={"Authorization": "Bearer "}),
        401,
        "Bearer",
    ),
    (
        "wrong secret",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE), api_key=key[:-4] + "0000"),
        401,
        "invalid",
    ),
    (
        "unknown key id",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE), api_key="pk_" + "0" * 16 + key[19:]),
        401,
        "invalid",
    ),
    (
        "not a key",
        lambda key: http_event("POST", PUBLISH, body=body_of(ONE), api_key="letmein"),
        401,
        "invalid API key",
    ),
    (
        "no key and bad body",
        lambda key: http_event("POST", PUBLISH, raw_body="{"),
        401,
        "missing Authorization",
    ),
    ("no key, unknown route", lambda key: http_event("GET", "/nope"), 401, "missing Authorization"),
]


def test_bad_requests_are_refused_with_the_field_named_and_change_nothing(api_key: str) -> None:
    revoked = KeyStore().create("revoked")
    KeyStore().revoke(revoked[0].key_id)
    cases = [*CORPUS, ("revoked key", post(body_of(ONE)), 401, "API key has been revoked")]
    before = snapshot()
    failures = []
    for name, build, status, words in cases:
        answer = gateway_call(build(revoked[1] if name == "revoked key" else api_key))
        body = answer.json
        if answer.status != status or set(body) != {"error", "error_type"} or words not in body["error"]:
            failures.append(f"{name}: {answer.status} {body}")
        expected_type = {
            400: "validation_error",
            401: "unauthorized",
            404: "not_found",
            413: "payload_too_large",
        }
        assert body.get("error_type") == expected_type[status], (name, body)
    assert not failures, "\n".join(failures)
    assert len(cases) >= 30
    assert snapshot() == before
    print(f"{len(cases)} bad requests refused, store and queues unchanged")


def test_valid_unusual_data_is_stored_faithfully(api_key: str) -> None:
    datas = [
        {"greeting": "héllo wörld 🌍", "日本": ["東京", "大阪"], "emoji_key_🔑": True},
        nested(99),  # 100 levels: the limit
        {
            "big": 2**70,
            "neg": -(2**63),
            "float": 1.5e300,
            "tiny": 5e-324,
            "pi": 3.141592653589793,
            "zero": 0.0,
        },
        {"empty": {}, "list": [], "null": None, "nested_list": [[[]]]},
        {"blob": "x" * (256 * KB - len('{"blob":""}'))},  # exactly 256 KB as compact JSON
    ]
    answer = publish(
        api_key, body_of([{"data": d, "event_type": "ünï"} for d in datas], topic="unicode.topic-1_x")
    )
    assert answer.status == 200, answer.json
    assert answer.json["sequence_ids"] == [1, 2, 3, 4, 5]
    assert {e["topic"] for e in answer.json["events"]} == {"unicode/topic-1_x"}
    page = EventStore().list_topic("unicode/topic-1_x", 0, 10)
    assert [event.data for event in page.events] == datas
    assert all(event.event_type == "ünï" for event in page.events)
    listed = gateway_call(http_event("GET", EVENTS, query={"topic": "unicode.topic-1_x"}, api_key=api_key))
    assert listed.status == 200
    assert [event["data"] for event in listed.json["events"]] == datas


def test_base64_bodies_are_read(api_key: str) -> None:
    answer = gateway_call(
        http_event("POST", PUBLISH, raw_body=json.dumps(body_of(ONE)), api_key=api_key, base64_body=True)
    )
    assert answer.status == 200, answer.json
    big = base64.b64encode(b"{" + b" " * (6 * KB * KB) + b"}").decode()
    event = http_event("POST", PUBLISH, raw_body="x", api_key=api_key)
    event.update(body=big, isBase64Encoded=True)
    assert gateway_call(event).status == 413


def test_every_status_code(api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = publish(api_key, body_of(ONE), headers={"Idempotency-Key": "k1"})
    assert ok.status == 200
    assert set(ok.json) == {"sequence_ids", "created_at", "events"}
    assert ok.json["created_at"].endswith("Z")
    listed = gateway_call(http_event("GET", EVENTS, query={"topic": "user.signup"}, api_key=api_key))
    assert (listed.status, listed.json["next_after_sequence_id"]) == (200, None)
    assert publish(api_key, {"topic": "a", "events": 1}).status == 400
    assert publish(api_key + "0", body_of(ONE)).status == 401
    assert gateway_call(http_event("DELETE", EVENTS, api_key=api_key)).status == 404
    conflict = publish(api_key, body_of([{"data": {"a": 2}}]), headers={"Idempotency-Key": "k1"})
    assert conflict.status == 409
    assert conflict.json == {
        "error": "Idempotency-Key was already used with a different request body",
        "error_type": "idempotency_conflict",
    }
    assert publish(api_key, body_of([{"data": {"b": "x" * 300 * KB}}])).status == 413

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals: table arn:aws:dynamodb:...")

    monkeypatch.setattr(EventStore, "reserve", broken)
    failed = publish(api_key, body_of(ONE))
    assert failed.status == 500
    assert failed.json == {"error": "internal error; see the API logs", "error_type": "internal_error"}

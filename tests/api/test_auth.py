"""API keys: the API handler's verdicts on every request, hashes-only storage, ``polos keys``."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from helpers.apigw import gateway_call, http_event
from helpers.aws_calls import count_calls
from polos.api import keys
from polos.api.keys import REPLICAS, KeyStore, parse_key
from polos.app import App
from polos.aws import settings
from polos.testing import local_stack

from infra.cli.main import main
from infra.local.apigw import HttpRequest


def verdict(headers: dict[str, str]) -> tuple[int, Any]:
    """The API handler's answer to a listing request with ``headers`` (nothing else in front of it)."""
    answer = gateway_call(http_event("GET", "/api/v1/events", query={"topic": "a"}, headers=headers))
    return answer.status, answer.json


def refused(reason: str) -> tuple[int, dict[str, str]]:
    return 401, {"error": reason, "error_type": "unauthorized"}


def test_key_verdicts_are_the_api_handlers(stack: dict[str, str]) -> None:
    record, key = KeyStore().create("ci")
    key_id, secret = parse_key(key) or ("", "")
    other_id = "f" * 16 if key_id != "f" * 16 else "e" * 16
    assert verdict({"Authorization": f"Bearer {key}"})[0] == 200
    assert verdict({"authorization": f"bearer   {key}  "})[0] == 200
    cases = {
        "wrong secret": ({"Authorization": f"Bearer pk_{key_id}_{'0' * 64}"}, "invalid API key"),
        "unknown id": ({"Authorization": f"Bearer pk_{other_id}_{secret}"}, "invalid API key"),
        "not a key": ({"Authorization": "Bearer hunter2"}, "invalid API key"),
        "no header": ({}, "missing Authorization header; send 'Authorization: Bearer <api key>'"),
        "blank header": (
            {"Authorization": "  "},
            "missing Authorization header; send 'Authorization: Bearer <api key>'",
        ),
        "no scheme": ({"Authorization": key}, "Authorization header must be 'Bearer <api key>'"),
        "basic": ({"Authorization": f"Basic {key}"}, "Authorization header must be 'Bearer <api key>'"),
        "bearer only": ({"Authorization": "Bearer"}, "Authorization header must be 'Bearer <api key>'"),
    }
    for name, (headers, reason) in cases.items():
        assert verdict(headers) == refused(reason), name
    KeyStore().revoke(record.key_id)
    assert verdict({"Authorization": f"Bearer {key}"}) == refused("API key has been revoked")


def test_the_key_is_read_strongly_consistent_and_a_refused_request_calls_nothing_else(
    stack: dict[str, str],
) -> None:
    """A finished revoke is seen by the next read; a bad key costs one GetItem and stores nothing."""
    _, key = KeyStore().create("consistency")
    key_id, _ = parse_key(key) or ("", "")
    reads: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        reads.append(params)

    client = settings.dynamodb()
    client.meta.events.register("provide-client-params.dynamodb.GetItem", record)
    try:
        assert verdict({"Authorization": f"Bearer {key}"})[0] == 200
        with count_calls() as calls:
            body = {"topic": "a", "events": [{"data": {}}]}
            wrong = f"Bearer pk_{key_id}_{'0' * 64}"
            event = http_event("POST", "/api/v1/events/publish", body=body, headers={"Authorization": wrong})
            assert gateway_call(event).status == 401
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.GetItem", record)
    keys_table = settings.get_settings().keys_table
    key_reads = [params for params in reads if params["TableName"] == keys_table]
    assert len(key_reads) == 2
    assert all(params.get("ConsistentRead") is True for params in key_reads)
    assert dict(calls) == {"dynamodb": 1, "dynamodb.GetItem": 1}


def test_a_revoked_key_is_refused_on_the_very_next_request(example_app: App) -> None:
    """Through the local stack's API Gateway (the path ``polos dev`` serves), no cache in between."""
    with local_stack(example_app) as stack:
        assert stack.request("GET", "/api/v1/runs").status == 200
        key_id = (parse_key(stack.api_key) or ("", ""))[0]
        KeyStore().revoke(key_id)
        answer = stack.request("GET", "/api/v1/runs")
        assert (answer.status, answer.body) == refused("API key has been revoked")


def test_a_request_without_authorization_gets_the_json_401(example_app: App) -> None:
    with local_stack(example_app) as stack:
        gateway = stack._local.gateway
        for request in (
            HttpRequest("GET", "/api/v1/runs"),
            HttpRequest("POST", "/api/v1/events/publish", [("content-type", "application/json")], b"{"),
            HttpRequest("GET", "/nowhere"),
        ):
            answer = gateway.handle(request)
            assert (answer.status, answer.json()) == refused(
                "missing Authorization header; send 'Authorization: Bearer <api key>'"
            ), request


def test_keys_are_stored_as_sha256_of_the_secret_only(stack: dict[str, str]) -> None:
    record, key = KeyStore().create("hash-check", key="pk_" + "a" * 16 + "_" + "b" * 64)
    assert record.key_id == "a" * 16
    items = settings.dynamodb().scan(TableName=settings.get_settings().keys_table)["Items"]
    assert len(items) == REPLICAS  # the key's item and its copies
    assert "b" * 64 not in repr(items)
    assert {item["secret_sha256"]["S"] for item in items} == {hashlib.sha256(b"b" * 64).hexdigest()}
    with pytest.raises(ValueError, match="already exists"):
        KeyStore().create("again", key=key)
    with pytest.raises(ValueError, match="must look like"):
        KeyStore().create("bad", key="dev-key")
    fresh = {KeyStore().create("n")[1] for _ in range(20)}
    assert len(fresh) == 20 and all(parse_key(k) for k in fresh)


def test_keys_cli_create_list_revoke(stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 0
    assert "No API keys" in capsys.readouterr().out
    assert main(["keys", "create", "--name", "deploy bot"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    key_id = (parse_key(key) or ("", ""))[0]
    assert key_id and f"Created API key {key_id} (deploy bot)" in out
    answer = gateway_call(http_event("GET", "/api/v1/events", query={"topic": "a"}, api_key=key))
    assert answer.status == 200
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and "deploy bot" in listing
    assert key.split("_")[2] not in listing
    assert main(["keys", "revoke", key_id]) == 0
    assert f"Revoked API key {key_id}" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    refused = gateway_call(http_event("GET", "/api/v1/events", query={"topic": "a"}, api_key=key))
    assert (refused.status, refused.json["error"]) == (401, "API key has been revoked")
    assert main(["keys", "revoke", "0123456789abcdef"]) == 1
    assert "no API key with id '0123456789abcdef'" in capsys.readouterr().err
    assert main(["keys", "create", "--name", " "]) == 2
    assert "key name must be 1 to 128 characters" in capsys.readouterr().err


def test_keys_cli_names_the_table_when_it_cannot_be_used(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(settings.ENV_KEYS_TABLE, "no-such-table")
    settings.reset()
    assert main(["keys", "list"]) == 1
    err = capsys.readouterr().err
    assert "cannot use the keys table 'no-such-table' (POLOS_KEYS_TABLE)" in err


def _checked_on(replica: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next key checks read copy ``replica`` of the key (0: the key's own item)."""
    monkeypatch.setattr(keys.secrets, "randbelow", lambda n: replica)


def test_each_check_reads_one_copy_and_a_revoke_reaches_every_copy_at_once(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record, key = KeyStore().create("replicated")
    pks: list[str] = []

    def record_read(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] == settings.get_settings().keys_table:
            pks.append(params["Key"]["pk"]["S"])

    client = settings.dynamodb()
    client.meta.events.register("provide-client-params.dynamodb.GetItem", record_read)
    try:
        for replica in range(REPLICAS):
            _checked_on(replica, monkeypatch)
            assert verdict({"Authorization": f"Bearer {key}"})[0] == 200
        assert pks == [record.key_id] + [f"{record.key_id}#{n}" for n in range(1, REPLICAS)]  # one read each
        KeyStore().revoke(record.key_id)
        for replica in range(REPLICAS):
            _checked_on(replica, monkeypatch)
            assert verdict({"Authorization": f"Bearer {key}"}) == refused("API key has been revoked"), replica
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.GetItem", record_read)
    assert [k.key_id for k in KeyStore().list()] == [record.key_id]  # copies are never listed


def test_a_key_made_before_copies_is_checked_and_revoked_on_its_own_item(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "pk_" + "c" * 16 + "_" + "d" * 64
    table = settings.get_settings().keys_table
    settings.dynamodb().put_item(
        TableName=table,
        Item={
            "pk": {"S": "c" * 16},
            "name": {"S": "old"},
            "secret_sha256": {"S": hashlib.sha256(b"d" * 64).hexdigest()},
            "created_at": {"S": "2026-01-01T00:00:00Z"},
        },
    )
    _checked_on(REPLICAS - 1, monkeypatch)  # a copy it does not have
    assert verdict({"Authorization": f"Bearer {key}"})[0] == 200
    assert KeyStore().revoke("c" * 16).revoked_at is not None
    assert verdict({"Authorization": f"Bearer {key}"}) == refused("API key has been revoked")
    assert len(settings.dynamodb().scan(TableName=table)["Items"]) == 1  # no copy appeared
    with pytest.raises(KeyError):
        KeyStore().revoke("e" * 16)

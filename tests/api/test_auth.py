"""API keys: the authorizer's verdicts, hashes-only storage, and ``polos keys create|list|revoke``."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from helpers.apigw import LambdaContext, authorizer_event, gateway_call, http_event, load_function
from polos.api.keys import CONTEXT_DENIED, CONTEXT_KEY_ID, KeyStore, parse_key
from polos.aws import settings

from infra.cli.main import main


def verdict(headers: dict[str, str]) -> dict[str, Any]:
    request = http_event("GET", "/api/v1/events", query={"topic": "a"}, headers=headers)
    answer: dict[str, Any] = load_function("authorizer").handler(authorizer_event(request), LambdaContext())
    assert answer["isAuthorized"] is True  # denials are shaped by the API handler, never by API Gateway
    context: dict[str, Any] = answer["context"]
    return context


def test_authorizer_verdicts(stack: dict[str, str]) -> None:
    record, key = KeyStore().create("ci")
    key_id, secret = parse_key(key) or ("", "")
    other_id = "f" * 16 if key_id != "f" * 16 else "e" * 16
    assert verdict({"Authorization": f"Bearer {key}"}) == {CONTEXT_KEY_ID: record.key_id}
    assert verdict({"authorization": f"bearer   {key}  "}) == {CONTEXT_KEY_ID: record.key_id}
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
        assert verdict(headers) == {CONTEXT_DENIED: reason}, name
    KeyStore().revoke(record.key_id)
    assert verdict({"Authorization": f"Bearer {key}"}) == {CONTEXT_DENIED: "API key has been revoked"}


def test_keys_are_stored_as_sha256_of_the_secret_only(stack: dict[str, str]) -> None:
    record, key = KeyStore().create("hash-check", key="pk_" + "a" * 16 + "_" + "b" * 64)
    assert record.key_id == "a" * 16
    items = settings.dynamodb().scan(TableName=settings.get_settings().keys_table)["Items"]
    assert len(items) == 1
    assert "b" * 64 not in repr(items)
    assert items[0]["secret_sha256"]["S"] == hashlib.sha256(b"b" * 64).hexdigest()
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

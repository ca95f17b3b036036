"""``polos publish TOPIC DATA_JSON`` over HTTP against the real handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.http_gateway import serve
from polos.api.keys import KeyStore
from polos.publish.events import EventStore

from infra.cli.main import main


@pytest.fixture
def api(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the API shares this process's stdout
    with serve() as url:
        monkeypatch.setenv("POLOS_API_URL", url)
        monkeypatch.setenv("POLOS_API_KEY", KeyStore().create("cli")[1])
        yield url


def test_publish_prints_the_answer_and_retries_publish_once(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "publish",
        "user.signup",
        '{"user_id": "u1", "email": "ü@example.com"}',
        "--event-type",
        "user_created",
    ]
    assert main([*argv, "--idempotency-key", "signup-u1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["sequence_ids"] == [1]
    assert first["events"][0]["topic"] == "user/signup"
    assert main([*argv, "--idempotency-key", "signup-u1"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    stored = EventStore().list_topic("user/signup", 0, 10).events
    assert [(e.event_type, e.data) for e in stored] == [
        ("user_created", {"user_id": "u1", "email": "ü@example.com"})
    ]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["publish", "t", "{nope"], 2, "DATA_JSON is not valid JSON"),
        (["publish", "t", "[1, 2]"], 2, "DATA_JSON must be a JSON object, got list"),
        (["publish", "bad topic", "{}"], 1, "HTTP 400 validation_error: topic 'bad topic' is invalid"),
        (
            ["publish", "t", "{}", "--idempotency-key", "k" * 300],
            1,
            "HTTP 400 validation_error: Idempotency-Key",
        ),
    ],
)
def test_publish_errors_are_clear(
    api: str, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    assert main(argv) == status
    assert message in capsys.readouterr().err


def test_publish_explains_missing_settings_bad_keys_and_unreachable_apis(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POLOS_API_KEY", "pk_" + "0" * 16 + "_" + "0" * 64)
    assert main(["publish", "t", "{}"]) == 1
    assert "HTTP 401 unauthorized: invalid API key" in capsys.readouterr().err
    monkeypatch.delenv("POLOS_API_KEY")
    assert main(["publish", "t", "{}"]) == 2
    assert "POLOS_API_KEY" in capsys.readouterr().err
    with serve() as closed:
        pass
    monkeypatch.setenv("POLOS_API_KEY", "pk_whatever")
    monkeypatch.setenv("POLOS_API_URL", closed)
    assert main(["publish", "t", "{}"]) == 1
    assert f"cannot reach the API at {closed}" in capsys.readouterr().err

"""Stack options, app loading, dev output and ``polos dev``'s refusals, each with a clear message."""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cli.dev import curl_line
from infra.cli.main import main
from infra.local.devlog import ConsoleLines
from infra.local.stack import StackError, StackOptions, resolve_app


def test_options_are_checked() -> None:
    assert StackOptions(visibility_timeout=10).lease_seconds == 9
    with pytest.raises(StackError, match="visibility timeout must be 2 to 43200 seconds, got 1"):
        StackOptions(visibility_timeout=1)
    with pytest.raises(
        StackError, match=r"max_attempts=0 is out of range; it must be 1 <= max_attempts <= 25"
    ):
        StackOptions(max_attempts=0)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    yield tmp_path


APP_SOURCE = """
from polos import workflow, WorkflowContext

@workflow(id="{id}")
async def hello(ctx: WorkflowContext, payload: dict) -> str:
    return "hi"
"""


def test_apps_load_by_module_or_file(in_tmp: Path) -> None:
    (in_tmp / "cli_dotted_app.py").write_text(APP_SOURCE.format(id="dotted-hello"))
    (in_tmp / "cli_file_app.py").write_text(APP_SOURCE.format(id="file-hello"))
    app, target = resolve_app("cli_dotted_app")
    assert target == "cli_dotted_app" and [wf.id for wf in app] == ["dotted-hello"]
    app, target = resolve_app("cli_file_app.py")
    assert target == str(in_tmp / "cli_file_app.py")  # absolute: the worker finds the same file anywhere
    assert [wf.id for wf in app] == ["file-hello"]


def test_bad_apps_are_named(in_tmp: Path) -> None:
    (in_tmp / "cli_empty_app.py").write_text("X = 1\n")
    with pytest.raises(StackError, match="defines no workflows"):
        resolve_app("cli_empty_app.py")
    with pytest.raises(StackError, match=r"cli_missing\.py' does not exist"):
        resolve_app("cli_missing.py")
    with pytest.raises(StackError, match="app module 'no_such_module_here' cannot be imported"):
        resolve_app("no_such_module_here")


def test_curl_line_is_ready_to_paste() -> None:
    words = shlex.split(curl_line("http://127.0.0.1:3000", "pk_k"))
    assert words[:4] == ["curl", "-s", "-X", "POST"]
    assert "http://127.0.0.1:3000/api/v1/events/publish" in words
    assert "Authorization: Bearer pk_k" in words
    body = json.loads(words[words.index("-d") + 1])
    assert body["topic"] == "user/signup" and body["events"][0]["data"]["user_id"]


def record(message: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("polos", level, __file__, 1, message, None, None)
    entry.__dict__.update(extra)
    return entry


def test_console_lines() -> None:
    line = ConsoleLines.format_line(record("run completed", run_id="run_1", workflow_id="wf", attempt=2))
    assert line.endswith("run run_1 wf: run completed (attempt 2)\n")
    failed = ConsoleLines.format_line(
        record(
            "run attempt failed",
            logging.ERROR,
            run_id="r",
            workflow_id="wf",
            error_type="ValueError",
            error="x",
        )
    )
    assert "run r wf: run attempt failed - ValueError: x" in failed
    assert ConsoleLines.format_line(record("API key accepted")) == ""  # info without a run: not shown
    assert "WARNING slow" in ConsoleLines.format_line(record("slow", logging.WARNING))


@pytest.fixture
def unchanged_environment() -> Iterator[None]:
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    yield
    assert {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} == before


def test_dev_refuses_bad_options(capsys: pytest.CaptureFixture[str], unchanged_environment: None) -> None:
    assert main(["dev", "--visibility-timeout", "1"]) == 2
    assert "polos dev: visibility timeout must be 2 to 43200 seconds, got 1" in capsys.readouterr().err
    assert main(["dev", "--app", "nowhere/missing_app.py", "--port", "0"]) == 2
    assert capsys.readouterr().err == "polos dev: app file 'nowhere/missing_app.py' does not exist\n"
    assert main(["dev", "--api-key", "secret", "--port", "0"]) == 2
    assert "polos dev: API key: API key must look like pk_<16 hex>_<64 hex>" in capsys.readouterr().err
    assert main(["dev", "--max-attempts", "26"]) == 2
    assert "polos dev: max_attempts=26 is out of range" in capsys.readouterr().err
    assert main(["dev", "--max-receive-count", "3"]) == 2  # gone: the error names what replaced it
    assert "polos dev: --max-receive-count is gone; use --max-attempts N" in capsys.readouterr().err


def test_dev_names_a_busy_port(capsys: pytest.CaptureFixture[str], unchanged_environment: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dev", "--port", str(port)]) == 2
    assert f"polos dev: cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_app_import_errors_are_named(in_tmp: Path) -> None:
    (in_tmp / "cli_broken_app.py").write_text("def broken(:\n")
    with pytest.raises(StackError, match=r"cannot load the app 'cli_broken_app\.py': SyntaxError"):
        resolve_app("cli_broken_app.py")

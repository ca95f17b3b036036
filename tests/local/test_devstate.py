"""What ``polos dev`` records for ``polos keys --dev``, and the clear errors when it is missing or stale."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cli.main import main
from infra.local.aws import fake_credentials
from infra.local.devstate import STATE_FILE_NAME, DevState, read, state_path


@pytest.fixture
def tmpdir_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory (where the state file lives) is ``tmp_path``; the environment is unchanged."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    yield tmp_path / STATE_FILE_NAME
    assert {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} == before


def closed_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def state(endpoint: str, pid: int = 4242) -> DevState:
    env = {**fake_credentials(endpoint), "POLOS_KEYS_TABLE": "polos-dev-keys"}
    return DevState(pid=pid, api_url="http://127.0.0.1:3000", aws_endpoint_url=endpoint, environment=env)


def test_the_state_round_trips_privately_and_is_removed_only_by_its_server(tmpdir_state: Path) -> None:
    assert state_path() == tmpdir_state
    mine = state("http://127.0.0.1:1")
    mine.write(tmpdir_state)
    assert read(tmpdir_state) == mine
    assert tmpdir_state.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmpdir_state.parent.iterdir()] == [STATE_FILE_NAME]  # no temporary left
    later = state("http://127.0.0.1:2", pid=4343)  # a polos dev started after mine
    later.write(tmpdir_state)
    mine.remove(tmpdir_state)
    assert read(tmpdir_state) == later
    later.remove(tmpdir_state)
    assert not tmpdir_state.exists()
    later.remove(tmpdir_state)  # twice: nothing to do


def test_keys_dev_without_a_running_polos_dev_says_so(
    tmpdir_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "list", "--dev"]) == 2
    assert capsys.readouterr().err == (
        f"polos keys: no polos dev is running (it records itself in {tmpdir_state} when it starts)\n"
    )
    tmpdir_state.write_text("{not json")
    assert main(["keys", "create", "--name", "x", "--dev"]) == 2
    assert f"polos keys: cannot read {tmpdir_state} (written by polos dev)" in capsys.readouterr().err


def test_keys_dev_names_a_polos_dev_that_stopped_without_cleaning_up(
    tmpdir_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = closed_endpoint()
    state(endpoint).write(tmpdir_state)  # as left by a polos dev that was killed
    assert main(["keys", "revoke", "0123456789abcdef", "--dev"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"polos keys: cannot use the keys table 'polos-dev-keys' of polos dev (pid 4242, AWS endpoint "
        f"{endpoint}; is it still running?): "
    ), err

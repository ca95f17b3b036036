"""API keys against a ``polos dev`` subprocess over real HTTP, managed by ``polos keys --dev`` as a user does:
every 401 in the contract's JSON shape (no header included), a created key works at once, a revoked key
is refused from the very next request, and SIGTERM stops the server cleanly (exit 0, its state file gone)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import ROOT, DevProcess, clean_env
from helpers.waiting import wait_until
from polos.api.keys import INVALID, MALFORMED, MISSING, REVOKED, new_key, parse_key

from infra.local.devstate import STATE_FILE_NAME, read

pytestmark = pytest.mark.e2e


def call(server: DevProcess, headers: dict[str, str]) -> tuple[int, str, Any]:
    """``GET /api/v1/runs`` over a fresh HTTP connection: status, content type, decoded JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/api/v1/runs?limit=1", headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), json.loads(response.read())
    finally:
        connection.close()


def refused(message: str) -> tuple[int, str, Any]:
    """DESIGN §2: ``401 {"error": "<human message>", "error_type": "unauthorized"}``, as JSON."""
    return 401, "application/json", {"error": message, "error_type": "unauthorized"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def polos_keys(server: DevProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``polos keys ARGS --dev`` in its own process, as a user types it in another terminal (with the same
    temporary directory as the server, where it records itself)."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "keys", *args, "--dev"],
        cwd=ROOT,
        env=clean_env() | {"TMPDIR": str(server.temp_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.timeout(60)
def test_keys_created_and_revoked_with_polos_keys_dev_are_checked_on_every_request(tmp_path: Path) -> None:
    with (tmp_path / "dev.log").open("w") as log:
        server = DevProcess(log)
        state_file = server.temp_dir / STATE_FILE_NAME
        try:
            server.wait_ready()
            state = wait_until(lambda: state_file.exists() and read(state_file), 10, "the recorded state")
            assert (state.pid, state.api_url) == (server.process.pid, server.url)
            assert f"AWS       {state.aws_endpoint_url}" in server.log()

            assert call(server, {}) == refused(MISSING)
            assert call(server, {"Authorization": server.api_key}) == refused(MALFORMED)
            assert call(server, bearer(new_key())) == refused(INVALID)
            assert call(server, bearer("not-a-key")) == refused(INVALID)

            created = polos_keys(server, "create", "--name", "e2e client")
            assert created.returncode == 0, created.stderr
            key = created.stdout.strip().splitlines()[-1]
            key_id = (parse_key(key) or ("", ""))[0]
            assert key_id, created.stdout
            status, _, body = call(server, bearer(key))
            assert status == 200 and "runs" in body, body

            listed = polos_keys(server, "list")
            assert listed.returncode == 0, listed.stderr
            assert any(line.split()[:2] == [key_id, "active"] for line in listed.stdout.splitlines())

            revoked = polos_keys(server, "revoke", key_id)
            assert revoked.returncode == 0, revoked.stderr
            assert call(server, bearer(key)) == refused(REVOKED)  # the very next request
            assert call(server, bearer(server.api_key))[0] == 200  # the other key is untouched
        finally:
            code = server.terminate()
        assert code == 0, server.log()
    assert not state_file.exists()
    after = polos_keys(server, "list")
    assert after.returncode == 2 and "no polos dev is running" in after.stderr

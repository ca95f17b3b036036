"""``polos dev`` in a subprocess on a free port, for the end-to-end tests (they talk to it over HTTP only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest
from polos import PolosClient
from polos.api.keys import new_key

ROOT = Path(__file__).resolve().parents[2]
E2E_APP = ROOT / "tests" / "e2e" / "apps" / "e2e_app.py"
READY_SECONDS = 60.0
# Options of the e2e app's server: failed deliveries return after 4 s, runs fail on their 3rd failed
# execution in a row (max_attempts), and their message is dead-lettered then.
VISIBILITY_TIMEOUT = 4
MAX_ATTEMPTS = 3


def clean_env() -> dict[str, str]:
    """This environment without what other tests may have left in it (log levels, table names, endpoints);
    the AWS faults a suite runs under (``make chaos``) pass through."""
    foreign = ("AWS_", "POLOS_", "POWERTOOLS_")
    faults = {k: v for k, v in os.environ.items() if k in ("POLOS_AWS_FAULTS", "POLOS_FAULTS_SEED")}
    kept = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    return kept | faults | {"PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DevProcess:
    """One ``polos dev`` subprocess: its URL, its key, its output (a file, so the pipe never fills)."""

    def __init__(self, output: IO[str], *args: str) -> None:
        self.port = free_port()
        # Its own temporary directory (TMPDIR): its log file and the state file `polos keys --dev` reads stay
        # apart from other servers', a `polos dev` the developer runs meanwhile included.
        self.temp_dir = Path(output.name).with_suffix(".tmp")
        self.temp_dir.mkdir(exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = new_key()
        self.output = output
        self.started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "infra.cli.main",
            "dev",
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
            *args,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env() | {"TMPDIR": str(self.temp_dir)},
        )
        self.ready_seconds = 0.0

    def client(self) -> PolosClient:
        return PolosClient(self.url, self.api_key)

    def log(self) -> str:
        self.output.flush()
        return Path(self.output.name).read_text()

    def _answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.url}/api/v1/runs?limit=1", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        try:
            # Not 2 s: under `make chaos` a throttled request is retried with backoff, as on AWS.
            with urllib.request.urlopen(request, timeout=10) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not self._answers():
            if self.process.poll() is not None:
                pytest.fail(f"polos dev exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"polos dev did not answer within {READY_SECONDS} s:\n{self.log()}")
            time.sleep(0.1)
        self.ready_seconds = time.monotonic() - self.started

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM; the exit status, or ``None`` (and the process killed) when it outlived ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def get_json(server: DevProcess, path: str) -> Any:
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {server.api_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())

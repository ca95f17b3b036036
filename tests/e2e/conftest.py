"""Session-wide ``polos dev`` subprocesses shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.dev_process import E2E_APP, MAX_ATTEMPTS, ROOT, VISIBILITY_TIMEOUT, DevProcess


@pytest.fixture(scope="session")
def dev_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevProcess, DevProcess]]:
    """The example app's server and the e2e app's, started side by side and shared by the e2e tests."""
    logs = tmp_path_factory.mktemp("dev")
    with (logs / "seed.log").open("w") as seed_log, (logs / "e2e.log").open("w") as e2e_log:
        seed = DevProcess(seed_log)
        e2e = DevProcess(
            e2e_log,
            "--app",
            str(E2E_APP.relative_to(ROOT)),
            "--visibility-timeout",
            str(VISIBILITY_TIMEOUT),
            "--max-attempts",
            str(MAX_ATTEMPTS),
        )
        try:
            seed.wait_ready()
            e2e.wait_ready()
            yield seed, e2e
        finally:
            for server in (seed, e2e):
                server.terminate()


@pytest.fixture(scope="session")
def seed_server(dev_servers: tuple[DevProcess, DevProcess]) -> DevProcess:
    return dev_servers[0]


@pytest.fixture(scope="session")
def e2e_server(dev_servers: tuple[DevProcess, DevProcess]) -> DevProcess:
    return dev_servers[1]

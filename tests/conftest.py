"""Shared fixtures: AWS on moto (in-process) with the tables and queues of an app."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))  # the example app is the package `workflows`
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` (its meter injects crashes) sits at the top of the repository

from helpers.crash_points import same_requests_at_any_speed  # noqa: E402
from helpers.stack import provision  # noqa: E402
from polos.app import App, load_app  # noqa: E402
from polos.aws import settings  # noqa: E402

from infra.local.aws import one_request_at_a_time  # noqa: E402

SERIAL_DIRS = (ROOT / "tests" / "e2e", ROOT / "tests" / "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that time a real ``polos dev`` or browser ``serial``: ``make test`` runs them after
    the others, alone (the others run side by side on every core)."""
    for item in items:
        if any(item.path.is_relative_to(directory) for directory in SERIAL_DIRS):
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, with fake credentials and no endpoint override."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), one_request_at_a_time():
        settings.reset()
        yield
    settings.reset()


@pytest.fixture
def steady_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """For crash matrices: runs make the same AWS requests at any speed (see ``helpers.crash_points``), so
    not under ``make chaos``'s faults either (duplicates, shuffles and throttles change which requests a
    run makes, and a crash point counted on a probe would then lie elsewhere or past the end)."""
    same_requests_at_any_speed(monkeypatch)
    monkeypatch.delenv("POLOS_AWS_FAULTS", raising=False)


@pytest.fixture
def example_app() -> App:
    return load_app("workflows")


@pytest.fixture
def stack(aws: None, example_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The example app's tables and queues in moto."""
    return provision(example_app, tmp_path, monkeypatch)


@pytest.fixture
def provision_app(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, str]]:
    """``provision_app(app, **options)``: :func:`helpers.stack.provision` as a fixture."""

    def provision_one(app: App, **options: int) -> dict[str, str]:
        return provision(app, tmp_path, monkeypatch, **options)

    return provision_one

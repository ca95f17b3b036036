"""Shared fixtures: AWS on moto (in-process) with the tables and queues of an app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))  # the example app is the package `workflows`

from infra.local.resources import LocalNames, create_resources  # noqa: E402
from infra.model import build_model  # noqa: E402
from polos import settings  # noqa: E402
from polos.app import App, load_app  # noqa: E402


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, with fake credentials and no endpoint override."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        settings.reset()
        yield
    settings.reset()


@pytest.fixture
def example_app() -> App:
    return load_app("workflows")


def provision(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: int) -> dict[str, str]:
    """Create ``app``'s tables and queues in moto and point the settings at them; workflow id → queue URL."""
    model = build_model(app)
    names = LocalNames(
        prefix="test-",
        queue_url_prefix="https://sqs.us-east-1.amazonaws.com/123456789012/test-",
        manifest_path=str(tmp_path / "polos_manifest.json"),
    )
    for key, value in names.env(model).items():
        monkeypatch.setenv(key, value)
    settings.reset()
    return create_resources(model, names, settings.dynamodb(), settings.sqs(), **options)


@pytest.fixture
def stack(aws: None, example_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The example app's tables and queues in moto."""
    return provision(example_app, tmp_path, monkeypatch)

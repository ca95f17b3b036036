"""Provision an app's tables and queues in moto for a test (``from helpers.stack import provision``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from polos.app import App
from polos.aws import settings

from infra.local.resources import LocalNames, create_resources
from infra.model import build_model


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

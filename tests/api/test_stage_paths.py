"""The key check judges the path the API routes: the stage is stripped first, whatever its name."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.apigw import LambdaContext, gateway_call, http_event, load_function


def staged(method: str, path: str, stage: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request through a named stage: ``rawPath`` starts with the stage, the router strips it."""
    raw = path if stage == "$default" else f"/{stage}{path}"
    query = {"topic": "a"} if path.startswith("/api") else None
    event = http_event(method, raw, query=query, headers=headers)
    event["requestContext"]["stage"] = stage
    return event


@pytest.mark.parametrize("stage", ["ui", "prod", "$default"])
def test_an_api_route_needs_the_key_whatever_the_stage_is_named(stack: dict[str, str], stage: str) -> None:
    answer = gateway_call(staged("GET", "/api/v1/events", stage))
    assert answer.status == 401, f"stage {stage!r}: {answer.status} {answer.json}"
    assert answer.json["error_type"] == "unauthorized"


@pytest.mark.parametrize("stage", ["ui", "prod", "$default"])
def test_the_dashboard_files_need_no_key_under_any_stage(stack: dict[str, str], stage: str) -> None:
    answer = load_function("api").handler(staged("GET", "/ui", stage), LambdaContext())
    assert answer["statusCode"] == 200, f"stage {stage!r}: {answer}"
    assert "<html" in answer["body"].lower()

"""The run page's "Rerun" and "Rerun from here" buttons, which call ``POST /api/v1/runs/{id}/rerun`` (the
recovery branch's route). Run after the merge: on the dashboard branch alone the route answers 404 and
these tests fail."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.dev_process import DevProcess, get_json
from test_dashboard import _badge, _click, connect, css, publish, run_of, wait

pytestmark = pytest.mark.e2e


def _finished_orders_run(browser: Any, server: DevProcess) -> dict[str, Any]:
    event_id = publish(server, "ui/orders", {"order": "R-1", "amount": 9})
    found = wait(
        browser,
        lambda b: (r := run_of(server, "ui-orders", event_id)) and r["status"] == "completed" and r,
        "a completed run",
    )
    return dict(found)


def test_rerun_starts_a_new_run_that_completes(browser: Any, ui_server: DevProcess) -> None:
    run = _finished_orders_run(browser, ui_server)
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: _badge(b) == "completed" and css(b, "#rerun-run"), "the rerun button")
    _click(browser, "#rerun-run")
    wait(browser, lambda b: not b.current_url.endswith(run["run_id"]), "the new run's page")
    wait(browser, lambda b: _badge(b) == "completed", "the rerun to complete", 60)
    new_id = browser.current_url.rsplit("/", 1)[-1]
    assert get_json(ui_server, f"/api/v1/runs/{new_id}").get("rerun_of") == run["run_id"]


def test_rerun_from_a_step_keeps_the_steps_before_it(browser: Any, ui_server: DevProcess) -> None:
    run = _finished_orders_run(browser, ui_server)
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: css(b, "button.rerun-step[data-k='rerunstep:send-receipt']"), "the step's button")
    _click(browser, "button.rerun-step[data-k='rerunstep:send-receipt']")
    wait(browser, lambda b: not b.current_url.endswith(run["run_id"]), "the new run's page")
    wait(browser, lambda b: _badge(b) == "completed", "the rerun to complete", 60)
    new_id = browser.current_url.rsplit("/", 1)[-1]
    rerun = get_json(ui_server, f"/api/v1/runs/{new_id}")
    before = {s["key"]: s["result"] for s in get_json(ui_server, f"/api/v1/runs/{run['run_id']}")["steps"]}
    kept = {s["key"]: s.get("result") for s in rerun["steps"] if s["key"] != "send-receipt"}
    assert kept == {key: value for key, value in before.items() if key != "send-receipt"}

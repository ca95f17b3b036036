"""Issue 27 in a real browser against ``polos dev``: the Workflows page every page starts from, failures
you can act on, waits you can read, phones, the publish and run forms, and what other features add."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import DevProcess, get_json
from test_dashboard import (
    UI_APP_IDS,
    _badge,
    _click,
    connect,
    css,
    key_dialog_open,
    publish,
    row_status,
    run_of,
    screenshot,
    send_key,
    wait,
)

pytestmark = pytest.mark.e2e

PHONES = [(360, 740), (390, 844)]


def _text(browser: Any, selector: str) -> str:
    found = css(browser, selector)
    return str(found[0].text) if found else ""


def _listed(browser: Any, prefix: str) -> list[str]:
    ids: list[str] = browser.execute_script(
        f"return [...document.querySelectorAll(\"a.row-link[data-k^='{prefix}']\")]"
        f".map(a => a.dataset.k.slice({len(prefix)}))"
    )
    return ids


def test_a_fresh_tab_starts_on_every_workflow_and_the_filters_narrow_the_lists(
    browser: Any, ui_server: DevProcess, tmp_path: Path
) -> None:
    browser.get(f"{ui_server.url}/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{ui_server.url}/ui")  # no section asked for: the Workflows page
    wait(browser, key_dialog_open, "the key dialog")
    send_key(browser, ui_server.api_key)
    wait(browser, lambda b: sorted(_listed(b, "wf:")) == UI_APP_IDS, "every workflow of the app")
    assert "ui/orders" in _text(browser, "#workflows-content")  # its trigger
    screenshot(browser, tmp_path, "dashboard-workflows.png")

    prefix = css(browser, "#wf-prefix")[0]
    prefix.send_keys("ui-w")
    wait(browser, lambda b: _listed(b, "wf:") == ["ui-wait"], "the prefix to narrow the list")
    from selenium.webdriver.common.keys import Keys

    prefix.send_keys(*[Keys.BACKSPACE] * 4)  # as a user empties the field: the list follows each key
    wait(browser, lambda b: len(_listed(b, "wf:")) == len(UI_APP_IDS), "the whole list again")
    from selenium.webdriver.support.ui import Select

    Select(css(browser, "#wf-trigger")[0]).select_by_value("schedule")
    wait(browser, lambda b: _listed(b, "wf:") == ["ui-nightly"], "the schedule filter")
    assert "0 3 * * *" in _text(browser, "#workflows-content")
    Select(css(browser, "#wf-trigger")[0]).select_by_value("invoke")
    wait(browser, lambda b: _listed(b, "wf:") == ["ui-child"], "the invoke-only filter")
    Select(css(browser, "#wf-trigger")[0]).select_by_value("")
    wait(browser, lambda b: len(css(b, "#wf-topic option")) > 1, "the topics")
    Select(css(browser, "#wf-topic")[0]).select_by_value("ui/slow")
    wait(browser, lambda b: _listed(b, "wf:") == ["ui-slow"], "the topic filter")

    # The whole row is clickable: its runs.
    event_id = publish(ui_server, "ui/slow", {"seconds": 0.05})
    run = wait(browser, lambda b: run_of(ui_server, "ui-slow", event_id), "the run")
    browser.execute_script("document.querySelector('#workflows-content tbody tr td:nth-child(3)').click()")
    wait(browser, lambda b: b.current_url.endswith("#/runs?workflow_id=ui-slow"), "the workflow's runs")
    wait(browser, lambda b: row_status(b, run["run_id"]) is not None, "the run listed")

    # The runs list: a workflow id prefix ("ui-sl" finds ui-slow's runs only) and a time range.
    connect(browser, ui_server, "#/runs?workflow_id=ui-sl&since=15m")
    wait(browser, lambda b: row_status(b, run["run_id"]) is not None, "runs by prefix and time")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('.runs tbody tr td:nth-child(3)')].map(td => td.textContent)"
    )
    assert shown and set(shown) == {"ui-slow"}
    connect(browser, ui_server, "#/runs?workflow_id=ui-nope")
    wait(browser, lambda b: "No run matches these filters." in _text(b, "#runs-content"), "no match")

    # Dead letters and events start from the app's workflows too, in this fresh tab.
    connect(browser, ui_server, "#/dead-letters")
    wait(browser, lambda b: sorted(_listed(b, "dl:")) == UI_APP_IDS, "every workflow's dead letters")
    connect(browser, ui_server, "#/events")
    wait(
        browser,
        lambda b: "topic:ui/orders" in json.dumps(_listed(b, "topic:ui/orders")) or css(b, "#topics"),
        "topics",
    )
    topics = _listed(browser, "topic:")
    assert set(topics) == {
        wf["trigger"]["topic"]
        for wf in get_json(ui_server, "/api/v1/workflows")["workflows"]
        if "topic" in wf["trigger"]
    }


def test_a_failed_run_shows_its_attempts_traceback_and_dead_letter_and_redrive_completes_it(
    browser: Any, ui_server: DevProcess, tmp_path: Path
) -> None:
    event_id = publish(ui_server, "ui/flaky", {"card": "4242"})
    wait(
        browser,
        lambda b: (run_of(ui_server, "ui-flaky", event_id) or {}).get("status") == "failed",
        "failure",
    )
    run_id = run_of(ui_server, "ui-flaky", event_id)["run_id"]  # type: ignore[index]
    connect(browser, ui_server, f"#/runs/{run_id}")
    wait(browser, lambda b: css(b, "#attempts") and css(b, "#traceback"), "the attempts and the traceback")
    attempts = _text(browser, "#attempts")
    assert "#1" in attempts and "failed" in attempts and "ConnectionError" in attempts
    traceback = browser.execute_script("return document.getElementById('traceback').textContent")
    assert "in _flaky_charge" in traceback and "ConnectionError: card network timed out" in traceback
    screenshot(browser, tmp_path, "dashboard-failed-run.png")

    _click(browser, "#dead-letter-link")
    wait(browser, lambda b: css(b, f"li.focused[data-run='{run_id}']"), "the run's dead letter, highlighted")
    letter = css(browser, f"li[data-run='{run_id}']")[0].text
    assert "ConnectionError: card network timed out" in letter  # the error, not only the raw message
    _click(browser, "button.redrive")
    wait(browser, lambda b: "Moved" in _text(b, "#toast"), "the redrive's answer")
    connect(browser, ui_server, f"#/runs/{run_id}")
    wait(browser, lambda b: _badge(b) == "completed", "the redriven run to complete", 60)
    wait(browser, lambda b: "#2" in _text(b, "#attempts"), "its second attempt")
    assert css(browser, "#dead-letter-link") == []


def test_waits_read_at_a_glance_and_live_durations_tick(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/wait", {})
    run = wait(browser, lambda b: run_of(ui_server, "ui-wait", event_id), "the run")
    wait(
        browser, lambda b: get_json(ui_server, f"/api/v1/runs/{run['run_id']}")["status"] == "waiting", "wait"
    )
    connect(browser, ui_server, "#/runs?workflow_id=ui-wait")

    def cell(b: Any, column: int) -> str:
        found = b.execute_script(
            "const a = document.querySelector(`a.row-link[data-k='run:${arguments[0]}']`);"
            "return a ? a.closest('tr').children[arguments[1]].textContent : '';",
            run["run_id"],
            column,
        )
        return str(found)

    wait(browser, lambda b: "wakes in 3 d" in cell(b, 4), "the runs list to say what the run waits for")
    created = cell(browser, 5)
    assert " ago" in created and created.split(" ")[1] not in ("", "·")  # clock time, zone, relative
    first = cell(browser, 6)
    wait(browser, lambda b: cell(b, 6) not in ("", first), "the waiting run's duration to tick", 10)
    assert cell(browser, 3) == "event · 1 event"

    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: "wakes in 3 d" in _text(b, "#wait-box"), "the wait banner")
    steps = browser.execute_script(
        "return [...document.querySelectorAll('.step-head > .muted:not(.step-no)')].map(e => e.textContent)"
    )
    assert steps == ["waiting"]  # a wait step does not read "0 attempts"

    event_id = publish(ui_server, "ui/approval", {})
    approval = wait(browser, lambda b: run_of(ui_server, "ui-approval", event_id), "the approval run")
    connect(browser, ui_server, f"#/runs/{approval['run_id']}")
    wait(browser, lambda b: "times out in 7 d" in _text(b, "#wait-box"), "the suspend's timeout")
    banner = _text(browser, "#wait-box")
    assert "/api/v1" not in banner and "resume of step approve" in banner
    assert json.loads(css(browser, "#wait-data")[0].text) == {"amount": 4200}  # the suspend's data


def test_parent_and_child_runs_and_the_event_a_wait_got_link_each_other(
    browser: Any, ui_server: DevProcess
) -> None:
    event_id = publish(ui_server, "ui/parent", {})
    wait(
        browser,
        lambda b: (run_of(ui_server, "ui-parent", event_id) or {}).get("status") == "completed",
        "parent",
    )
    parent = run_of(ui_server, "ui-parent", event_id)
    assert parent is not None
    connect(browser, ui_server, f"#/runs/{parent['run_id']}")
    wait(browser, lambda b: css(b, "#children a.child-link"), "the child's link")
    _click(browser, "#children a.child-link")
    wait(browser, lambda b: css(b, "a.parent-link"), "the child's page")
    assert "invoked by parent run" in _text(browser, ".facts")
    assert css(browser, "a.parent-link")[0].get_attribute("href").endswith(f"#/runs/{parent['run_id']}")

    waiting_event = publish(ui_server, "ui/await", {})
    wait(
        browser,
        lambda b: (run_of(ui_server, "ui-await", waiting_event) or {}).get("status") == "waiting",
        "w",
    )
    approved = publish(ui_server, "ui/approved", {"by": "ada"})
    done = wait(
        browser,
        lambda b: (r := run_of(ui_server, "ui-await", waiting_event)) and r["status"] == "completed" and r,
        "the wait for the event to complete",
    )
    connect(browser, ui_server, f"#/runs/{done['run_id']}")
    wait(browser, lambda b: css(b, "a.event-link"), "the event that satisfied the wait")
    _click(browser, "a.event-link")
    wait(browser, lambda b: css(b, "#focused-event"), "the event, highlighted on its topic's page")
    assert approved[:8] in css(browser, "#focused-event")[0].text


@pytest.mark.parametrize("size", PHONES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_phone_widths_have_no_horizontal_scroll_and_every_action_in_reach(
    browser: Any, ui_server: DevProcess, size: tuple[int, int], tmp_path: Path
) -> None:
    event_id = publish(ui_server, "ui/orders", {"order": "P-1", "amount": 1})
    run = wait(
        browser,
        lambda b: (r := run_of(ui_server, "ui-orders", event_id)) and r["status"] == "completed" and r,
        "run",
    )
    original = browser.get_window_size()
    try:
        browser.set_window_size(*size)
        pages = [
            "#/workflows",
            "#/runs",
            f"#/runs/{run['run_id']}",
            "#/events?topic=ui/orders",
            "#/dead-letters",
        ]
        for page in pages:
            connect(browser, ui_server, page)
            wait(browser, lambda b: "Live" in _text(b, "#live"), f"{page} loaded")
            wait(browser, lambda b: css(b, "#main .panel"), f"{page}'s content")
            width = browser.execute_script(
                "return [document.scrollingElement.scrollWidth, window.innerWidth]"
            )
            assert width[0] <= width[1], f"{page} at {size}: {width[0]} px wide in a {width[1]} px window"
            out = browser.execute_script(
                "return [...document.querySelectorAll('header button:not([hidden]), header a, main button,"
                " main a, main select, main input, .step-head')]"
                ".filter(e => e.offsetParent !== null)"
                ".filter(e => { const r = e.getBoundingClientRect();"
                " return r.left < 0 || r.right > innerWidth + 0.5; })"
                ".map(e => e.id || e.className || e.textContent)"
            )
            assert out == [], f"{page} at {size}: cut or out of reach: {out}"
        for button in ("#open-run", "#open-publish", "#pause", "#forget"):
            assert css(browser, button)[0].is_displayed(), button
        # The runs table is readable: each run a block of labelled lines, the status first.
        connect(browser, ui_server, "#/runs")
        wait(browser, lambda b: row_status(b, run["run_id"]) == "completed", "the run's row")
        label = browser.execute_script(
            "return getComputedStyle(document.querySelector('.runs tbody td'), '::before').content"
        )
        assert label == '"Status"'
        if size == PHONES[1]:
            screenshot(browser, tmp_path, "dashboard-phone.png")
    finally:
        browser.set_window_size(original["width"], original["height"])


def test_the_publish_and_run_forms_validate_json_and_start_runs_that_show_up_live(
    browser: Any, ui_server: DevProcess
) -> None:
    connect(browser, ui_server, "#/workflows")
    wait(browser, lambda b: css(b, "a.row-link[data-k='wf:ui-orders']"), "the workflows")
    _click(browser, "#open-publish")
    topic, data = css(browser, "#publish-topic")[0], css(browser, "#publish-data")[0]
    topic.clear()
    topic.send_keys("ui/orders")
    data.clear()
    data.send_keys('{"order": "F-1",')
    _click(browser, "#publish-form button[type=submit]")
    wait(browser, lambda b: "Data is not JSON" in _text(b, "#publish-error"), "the JSON error")
    data.clear()
    data.send_keys("[1, 2]")
    _click(browser, "#publish-form button[type=submit]")
    wait(browser, lambda b: "must be a JSON object" in _text(b, "#publish-error"), "the object error")
    topic.clear()
    topic.send_keys("not a topic!")
    data.clear()
    data.send_keys('{"order": "F-1", "amount": 7}')
    _click(browser, "#publish-form button[type=submit]")
    wait(browser, lambda b: "topic" in _text(b, "#publish-error"), "the API's error naming the topic")
    topic.clear()
    topic.send_keys("ui/orders")
    _click(browser, "#publish-form button[type=submit]")
    wait(browser, lambda b: css(b, "#focused-event"), "the published event on its topic's page")
    wait(browser, lambda b: "completed" in css(b, "#focused-event")[0].text, "its run, live", 60)

    _click(browser, "#open-run")
    from selenium.webdriver.support.ui import Select

    Select(css(browser, "#run-workflow")[0]).select_by_value("ui-child")
    payload = css(browser, "#run-payload")[0]
    payload.clear()
    payload.send_keys("{oops}")
    _click(browser, "#run-form button[type=submit]")
    wait(browser, lambda b: "Payload is not JSON" in _text(b, "#run-error"), "the JSON error")
    payload.clear()
    payload.send_keys('{"hello": "from the form"}')
    _click(browser, "#run-form button[type=submit]")
    wait(browser, lambda b: "#/runs/run_" in b.current_url, "the new run's page")
    wait(browser, lambda b: _badge(b) == "completed", "the run to complete, live", 60)
    assert json.loads(css(browser, "#result")[0].text) == {"echo": {"hello": "from the form"}}


def test_queued_skipped_retrying_and_costed_runs_say_why_in_the_shared_components(
    browser: Any, ui_server: DevProcess
) -> None:
    """What the other branches add (CONTRACTS.md), through the components every page uses."""
    connect(browser, ui_server, "#/runs")
    wait(browser, lambda b: "Live" in _text(b, "#live"), "the page")
    soon = "new Date(Date.now() + 125 * 60000).toISOString()"
    texts = browser.execute_script(
        f"""
        const base = {{workflow_id: 'wf', attempts: 0, result: null, error: null,
          created_at: new Date().toISOString(), updated_at: new Date().toISOString(),
          trigger: {{type: 'event', event_ids: ['e1']}}}};
        const runs = [
          {{...base, run_id: 'r1', status: 'queued',
            waiting_for: {{kind: 'concurrency', queue: 'payments', key: 'acme'}}}},
          {{...base, run_id: 'r2', status: 'queued',
            waiting_for: {{kind: 'throttle', key: 'acme', until: {soon}}}}},
          {{...base, run_id: 'r3', status: 'skipped'}},
          {{...base, run_id: 'r4', status: 'waiting',
            waiting_for: {{step: 'pay', kind: 'retry', until: {soon}}}}},
        ];
        const table = window.polosDashboard.runsTable(runs);
        return [...table.querySelectorAll('tbody tr')].map(tr => tr.children[4].textContent);
        """
    )
    assert texts == [
        "a slot of queue payments (key acme)",
        "throttle (key acme) · runs in 2 h",
        "rate limited: not run",
        "retry of step pay · next attempt in 2 h",
    ]

"""The dashboard in a real browser against a running ``polos dev``: key, live runs, steps, XSS, keyboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.dev_process import ROOT, DevProcess, clean_env, get_json
from polos.app import load_app

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 60
UI_APP_IDS = sorted(wf.id for wf in load_app(str(ROOT / "tests" / "browser" / "apps" / "ui_app.py")))
XSS = "<img src=x onerror=window.__xss=1>"
# `make screenshot` sets it to docs/dashboard.png; otherwise the screenshot goes to the test's tmp dir.
SCREENSHOT_ENV = "POLOS_SCREENSHOT"


def wait(browser: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll the page (every 0.1 s) until ``condition`` holds; the failure names ``what``.

    A live page replaces what it shows when its data changes (every 1.5 s at most): an element found by
    ``condition`` may be gone by the time it is read. That read is not yet the state waited for, so it is
    polled again (``StaleElementReferenceException``, like a missing element, counts as "not yet")."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    waiting = WebDriverWait(browser, timeout, poll_frequency=0.1, ignored_exceptions=ignored)
    return waiting.until(condition, f"waiting for {what}")


def test_a_wait_reads_again_when_a_re_render_replaced_the_element_it_found() -> None:
    """The race of a live page (no browser needed): the element found is replaced before it is read."""
    from selenium.common.exceptions import StaleElementReferenceException

    reads = iter(["stale", "running", "completed"])

    def badge(_: Any) -> bool:
        text = next(reads)
        if text == "stale":
            raise StaleElementReferenceException("the page re-rendered the badge")
        return text == "completed"

    assert wait(object(), badge, "the badge to read completed", timeout=5) is True


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def key_dialog_open(browser: Any) -> bool:
    return bool(browser.execute_script("return document.getElementById('key-dialog').open"))


def send_key(browser: Any, key: str) -> None:
    """Type the key and press Enter, as a user does."""
    from selenium.webdriver.common.keys import Keys

    field = css(browser, "#key-input")[0]
    field.clear()
    field.send_keys(key, Keys.ENTER)


def connect(browser: Any, server: DevProcess, where: str = "#/runs") -> None:
    """Open the dashboard at ``where``, giving the key when the page asks for it."""
    browser.get(f"{server.url}/ui{where}")
    wait(browser, lambda b: key_dialog_open(b) or b.find_elements("id", "live"), "the page")
    if key_dialog_open(browser):
        send_key(browser, server.api_key)
    wait(browser, lambda b: not key_dialog_open(b), "the key dialog to close")


def publish(server: DevProcess, topic: str, data: dict[str, Any], event_type: str | None = None) -> str:
    event: dict[str, Any] = {"data": data} | ({"event_type": event_type} if event_type else {})
    request = urllib.request.Request(
        f"{server.url}/api/v1/events/publish",
        data=json.dumps({"topic": topic, "events": [event]}).encode(),
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        event_id: str = json.loads(response.read())["events"][0]["id"]
        return event_id


def run_of(server: DevProcess, workflow_id: str, event_id: str) -> dict[str, Any] | None:
    runs = get_json(server, f"/api/v1/runs?workflow_id={workflow_id}&limit=100")["runs"]
    return next((run for run in runs if event_id in run["trigger"]["event_ids"]), None)


def row_status(browser: Any, run_id: str) -> str | None:
    """The status badge of ``run_id``'s row in the runs table, or ``None`` while it is not listed."""
    found = browser.execute_script(
        "const a = document.querySelector(`a.row-link[data-k='run:${arguments[0]}']`);"
        "return a ? a.closest('tr').querySelector('.badge').textContent : null;",
        run_id,
    )
    return found if isinstance(found, str) else None


def step_rows(browser: Any) -> list[tuple[str, str, str]]:
    """``(key, status, attempts)`` of each step shown on a run's page."""
    rows: list[list[str]] = browser.execute_script(
        "return [...document.querySelectorAll('.timeline .step')].map(li => ["
        "li.querySelector('.step-key').textContent, li.querySelector('.badge').textContent,"
        "li.querySelector('.step-head > .muted:not(.step-no):not(.num)').textContent])"
    )
    return [(key, status, attempts) for key, status, attempts in rows]


def test_the_page_asks_for_the_key_and_shows_a_published_run_live(
    browser: Any, ui_server: DevProcess, tmp_path: Path
) -> None:
    browser.get(f"{ui_server.url}/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{ui_server.url}/ui#/runs")
    wait(browser, key_dialog_open, "the key dialog")  # the static page loads without a key, then asks
    send_key(browser, "pk_" + "0" * 16 + "_" + "0" * 64)
    wait(browser, lambda b: "invalid API key" in css(b, "#key-error")[0].text, "the refused key's message")
    assert key_dialog_open(browser)
    send_key(browser, ui_server.api_key)
    wait(browser, lambda b: not key_dialog_open(b), "the key to be accepted")
    wait(browser, lambda b: "Live" in css(b, "#live")[0].text, "the live indicator")

    # Published after the page loaded: the run appears and completes without a reload.
    event_id = publish(ui_server, "ui/orders", {"order": "A-1001", "amount": 4200})
    run = wait(browser, lambda b: run_of(ui_server, "ui-orders", event_id), "the run to exist")
    wait(browser, lambda b: row_status(b, run["run_id"]) is not None, "the run's row")
    wait(browser, lambda b: row_status(b, run["run_id"]) == "completed", "the run to show completed")
    assert browser.execute_script("return sessionStorage.getItem('polos.apiKey')") == ui_server.api_key

    css(browser, f"a.row-link[data-k='run:{run['run_id']}']")[0].click()
    wait(browser, lambda b: len(step_rows(b)) == 4, "the run's four steps")
    assert step_rows(browser) == [
        ("reserve-stock", "completed", "1 attempt"),
        ("charge-card", "completed", "2 attempts"),
        ("receipt-id", "completed", "1 attempt"),
        ("send-receipt", "completed", "1 attempt"),
    ]
    assert json.loads(css(browser, "#payload")[0].text)["data"] == {"order": "A-1001", "amount": 4200}
    assert json.loads(css(browser, "#result")[0].text)["order"] == "A-1001"
    assert css(browser, "#cancel-run") == []  # a finished run cannot be cancelled
    screenshot(browser, tmp_path)


def screenshot(browser: Any, tmp_path: Path, name: str = "dashboard.png") -> None:
    """A picture for the README (``make screenshot`` puts it next to docs/dashboard.png): by default a
    finished run's page on a laptop-sized window."""
    chosen = os.environ.get(SCREENSHOT_ENV)
    target = Path(chosen).parent / name if chosen else tmp_path / name
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(target))
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_user_data_is_shown_as_text_never_run_as_html(browser: Any, ui_server: DevProcess) -> None:
    connect(browser, ui_server)
    data = {"note": XSS, XSS: "key too"}
    event_id = publish(
        ui_server, "ui/echo", {**data, "boom": XSS}, event_type="<script>window.__xss=2</script>"
    )
    run = wait(browser, lambda b: run_of(ui_server, "ui-echo", event_id), "the run")
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: css(b, ".error-box"), "the run's error")
    wait(
        browser,
        lambda b: XSS in css(b, ".step-error")[0].text if css(b, ".step-error") else False,
        "step error",
    )
    assert XSS in css(browser, ".error-box")[0].text and XSS in css(browser, "#payload")[0].text

    connect(browser, ui_server, "#/events?topic=ui/echo")
    wait(browser, lambda b: any("<script>" in cell.text for cell in css(b, ".events td")), "the event row")
    assert XSS in css(browser, ".events summary")[0].text
    assert browser.execute_script("return window.__xss") is None
    # innerHTML would have made elements of the data even where the CSP stops their scripts.
    assert css(browser, "main img") == [] and css(browser, "main script") == []


def test_keyboard_only(browser: Any, ui_server: DevProcess) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    event_id = publish(ui_server, "ui/slow", {"seconds": 0.1})
    run = wait(browser, lambda b: run_of(ui_server, "ui-slow", event_id), "the run")
    connect(browser, ui_server)
    wait(browser, lambda b: row_status(b, run["run_id"]) is not None, "the run's row")
    keys = ActionChains(browser)
    active = lambda: browser.switch_to.active_element  # noqa: E731

    keys.send_keys("/").perform()
    assert active().get_attribute("id") == "filter-workflow"
    keys.send_keys(Keys.ESCAPE).perform()
    keys.send_keys(Keys.ARROW_DOWN).perform()
    first = active()
    assert "row-link" in (first.get_attribute("class") or "")
    outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", first)
    assert outline not in ("none", "", None)  # focus is visible
    keys.send_keys(Keys.ARROW_DOWN).send_keys(Keys.ARROW_UP).perform()
    assert active() == first
    target = first.get_attribute("data-k").removeprefix("run:")
    keys.send_keys(Keys.ENTER).perform()
    wait(browser, lambda b: b.current_url.endswith(f"#/runs/{target}"), "the run's page")
    wait(browser, lambda b: css(b, ".timeline, .run-head"), "the run's content")
    keys.send_keys(Keys.ESCAPE).perform()
    wait(browser, lambda b: b.current_url.endswith("#/runs"), "Escape back to the runs")

    # Every control is reachable with Tab: the nav, the filters, the buttons.
    reached = set()
    for _ in range(40):
        keys.send_keys(Keys.TAB).perform()
        reached.add(active().get_attribute("id") or active().text)
    assert {"filter-workflow", "filter-status", "filter-limit", "pause", "forget", "Events"} <= reached


def test_cancel_button_only_where_the_run_allows_it(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/slow", {"seconds": 8})
    run = wait(browser, lambda b: run_of(ui_server, "ui-slow", event_id), "the run")
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: _badge(b) == "running" and css(b, "#cancel-run"), "running, with a cancel button")
    wait(browser, lambda b: _badge(b) == "completed", "the run to finish", 30)
    wait(browser, lambda b: not css(b, "#cancel-run"), "the cancel button to go")
    assert css(browser, "#resume-run") == []


def _dead_letter_route(server: DevProcess) -> bool:
    try:
        get_json(server, "/api/v1/workflows/ui-echo/dead-letters")
    except urllib.error.HTTPError as error:
        if error.code == 404 and json.loads(error.read())["error"].startswith("no route"):
            return False
        raise
    return True


def test_dead_letters_and_redrive(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/echo", {"boom": "dead"})
    wait(
        browser, lambda b: (run_of(ui_server, "ui-echo", event_id) or {}).get("status") == "failed", "failure"
    )
    connect(browser, ui_server, "#/dead-letters?workflow_id=ui-echo")
    if not _dead_letter_route(ui_server):
        wait(browser, lambda b: "no dead-letter routes" in css(b, "#dead-content")[0].text, "the notice")
        assert css(browser, "button.redrive") == []  # the route answers 404: no redrive button
        return
    wait(browser, lambda b: css(b, "button.redrive"), "the redrive button")
    css(browser, "button.redrive")[0].click()
    wait(browser, lambda b: "Moved" in css(b, "#toast")[0].text, "the redrive's answer")


def test_render_time_at_a_thousand_runs(browser: Any, ui_server: DevProcess) -> None:
    """Building and laying out 1,000 rows stays well under a second (a page shows at most 100)."""
    connect(browser, ui_server)
    wait(browser, lambda b: "Live" in css(b, "#live")[0].text, "the live indicator")
    build = """
        const runs = [];
        for (let i = 0; i < arguments[0]; i++) runs.push({run_id: 'r' + i, workflow_id: 'wf-' + (i % 7),
          status: ['completed', 'failed', 'running'][i % 3], attempts: 1, result: null, error: null,
          created_at: new Date(Date.now() - i * 1000).toISOString(), updated_at: new Date().toISOString(),
          trigger: {type: 'event', event_ids: ['e' + i]}});
        const started = performance.now();
        const table = window.polosDashboard.runsTable(runs);
        document.getElementById('main').append(table);
        table.getBoundingClientRect(); document.body.offsetHeight;  // force layout
        const took = performance.now() - started;
        table.remove();
        return took;
    """
    # The best of three: the machine's other load (2 shared cores) adds to a single measurement.
    thousand = min(browser.execute_script(build, 1000) for _ in range(3))
    page_of_100 = min(browser.execute_script(build, 100) for _ in range(3))
    print(f"\nruns table built and laid out: 100 rows {page_of_100:.0f} ms, 1,000 rows {thousand:.0f} ms")
    # Bounds with room for a loaded 2-core machine; typical figures are in docs/dashboard.md.
    assert page_of_100 < 500 and thousand < 1500
    page = float(browser.execute_script("return document.body.dataset.renderMs || 'nan'"))
    assert page == page and page < 200  # the live page's last render (not NaN)


def _badge(browser: Any) -> str:
    """The run page's status badge ("" before the page shows the run); read inside :func:`wait`, which
    polls again when a re-render replaced the badge before it was read."""
    badges = css(browser, ".run-head .badge")
    return str(badges[0].text) if badges else ""


def _click(browser: Any, selector: str) -> None:
    """Click ``selector``, again if a re-render replaced it between finding and clicking."""
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(b: Any) -> bool:
        try:
            css(b, selector)[0].click()
        except (StaleElementReferenceException, IndexError):
            return False
        return True

    wait(browser, clicked, f"a click on {selector}")


def test_cancel_a_waiting_run_from_its_page(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/wait", {})
    run = wait(browser, lambda b: run_of(ui_server, "ui-wait", event_id), "the run")
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: _badge(b) == "waiting", "the run to wait")
    _click(browser, "#cancel-run")
    wait(browser, lambda b: _badge(b) == "cancelled", "the run to be cancelled")
    wait(browser, lambda b: not css(b, "#cancel-run"), "the cancel button to go")
    shown = get_json(ui_server, f"/api/v1/runs/{run['run_id']}")
    assert shown["status"] == "cancelled"
    assert [step["key"] for step in shown["steps"]] == ["nap"]  # no step after the wait ever ran


def test_resume_a_suspended_run_from_its_page(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/approval", {})
    run = wait(browser, lambda b: run_of(ui_server, "ui-approval", event_id), "the run")
    connect(browser, ui_server, f"#/runs/{run['run_id']}")
    wait(browser, lambda b: _badge(b) == "waiting" and css(b, "#resume-run"), "the resume button")
    _click(browser, "#resume-run")
    data = css(browser, "#resume-data")[0]  # the dialog is not re-rendered
    data.clear()
    data.send_keys('{"approved": true}')
    _click(browser, "#resume-form button[type=submit]")
    wait(browser, lambda b: _badge(b) == "completed", "the resumed run to complete")
    assert get_json(ui_server, f"/api/v1/runs/{run['run_id']}")["result"] == {"approved": True}


def _polos_keys_create(server: DevProcess, scope: str) -> str:
    """A key of ``scope`` made with ``polos keys create --scope --dev``, as a user makes one."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cli.main",
            "keys",
            "create",
            "--name",
            scope,
            "--scope",
            scope,
            "--dev",
        ],
        cwd=ROOT,
        env=clean_env() | {"TMPDIR": str(server.temp_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _nav_hidden(browser: Any, section: str) -> bool:
    return bool(
        browser.execute_script(f"return document.querySelector('nav a[data-nav=\"{section}\"]').hidden")
    )


def test_a_read_key_sees_runs_and_is_offered_no_action(browser: Any, ui_server: DevProcess) -> None:
    event_id = publish(ui_server, "ui/approval", {})  # a suspended run: an admin key may cancel or resume it
    run = wait(browser, lambda b: run_of(ui_server, "ui-approval", event_id), "the run")
    wait(
        browser,
        lambda b: get_json(ui_server, f"/api/v1/runs/{run['run_id']}")["status"] == "waiting",
        "the wait",
    )
    browser.get(f"{ui_server.url}/ui")
    browser.execute_script("sessionStorage.clear()")
    try:
        browser.get(f"{ui_server.url}/ui#/runs")
        wait(browser, key_dialog_open, "the key dialog")
        send_key(browser, _polos_keys_create(ui_server, "publish"))
        wait(
            browser,
            lambda b: "only publish events" in css(b, "#key-error")[0].text,
            "the publish key refused",
        )
        send_key(browser, _polos_keys_create(ui_server, "read"))
        wait(browser, lambda b: not key_dialog_open(b), "the read key to be accepted")
        wait(browser, lambda b: row_status(b, run["run_id"]) == "waiting", "the run listed")
        assert css(browser, "#scope")[0].text == "read key · view only"
        assert not _nav_hidden(browser, "dead-letters") and not _nav_hidden(browser, "events")
        assert (
            not css(browser, "#open-run")[0].is_displayed()
            and not css(browser, "#open-publish")[0].is_displayed()
        )

        css(browser, f"a.row-link[data-k='run:{run['run_id']}']")[0].click()
        wait(browser, lambda b: _badge(b) == "waiting" and css(b, "#payload"), "the run's page")
        assert css(browser, "#cancel-run") == [] and css(browser, "#resume-run") == []
        assert css(browser, "#rerun-run") == [] and css(browser, ".rerun-step") == []
        assert "An admin key can resume it." in css(browser, "#wait-box")[0].text

        browser.get(f"{ui_server.url}/ui#/dead-letters")  # every workflow's count: a read key sees them
        wait(browser, lambda b: css(b, "a.row-link[data-k='dl:ui-echo']"), "the dead letters' counts")
        assert css(browser, "button.redrive") == []
        browser.get(f"{ui_server.url}/ui#/workflows")
        wait(browser, lambda b: css(b, "a.row-link[data-k='wf:ui-echo']"), "the workflows")
        assert css(browser, "button.run-wf") == []
        browser.get(f"{ui_server.url}/ui#/dead-letters?workflow_id=ui-echo")
        wait(
            browser,
            lambda b: "Dead letters need an admin key." in css(b, "#main")[0].text,
            "the dead letters",
        )
        assert css(browser, "button.redrive") == []
        assert "Error" not in css(browser, "#live")[0].text
    finally:
        browser.execute_script("sessionStorage.clear()")  # the other tests connect with the admin key

"""A headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) and a ``polos dev``
serving the dashboard. The tests skip, saying why, only where no browser is installed (``make browser``
installs it; ``.ci/run`` does on CI)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.dev_process import ROOT, DevProcess

UI_APP = ROOT / "tests" / "browser" / "apps" / "ui_app.py"
WINDOW = (1440, 900)  # a laptop screen


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "no browser: the dashboard tests need Debian's chromium and chromium-driver "
            "(`make browser` installs them as root; `apt-get install -y chromium chromium-driver`)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: `make install`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    # An explicit driver: selenium never looks for (or downloads) one itself.
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    """``polos dev`` with the dashboard tests' app; failed deliveries fail the run at once."""
    log = tmp_path_factory.mktemp("ui") / "dev.log"
    with log.open("w") as output:
        server = DevProcess(
            output,
            "--app",
            str(UI_APP.relative_to(ROOT)),
            "--visibility-timeout",
            "20",  # an execution slowed by a loaded machine is not taken for a dead one (DeliveryExhausted)
            "--max-attempts",
            "1",  # one execution: a failing run fails at once and is dead-lettered
        )
        try:
            server.wait_ready()
            yield server
        finally:
            server.terminate()

"""A virtualenv with the official Polos client (``polos-sdk``), pinned, cached under the repository.

Its import name (``polos``) is ours too, so it cannot share a process with this project: it gets its own
venv (``.sdk-venv/``, git-ignored), made once by the first test that needs it and reused while the pin
holds. A venv whose install did not finish has no marker and is made again. When the package index
cannot be reached the test is skipped, saying so; any other install failure fails it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK_VENV = ROOT / ".sdk-venv"
SDK_REQUIREMENT = "polos-sdk==0.1.15"
MARKER = SDK_VENV / f".installed-{SDK_REQUIREMENT}"
INSTALL_SECONDS = 300
# What pip prints when it cannot reach the index (as opposed to a package that fails to install).
UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
)


def sdk_python() -> Path:
    """The SDK venv's interpreter, the venv made first when missing (``pytest.skip`` when offline)."""
    python = SDK_VENV / "bin" / "python"
    if MARKER.exists():
        return python
    shutil.rmtree(SDK_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True, timeout=120)
    # Bounded retries and timeout: an unreachable index answers within a minute, not pip's default 15.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--retries", "1", "--timeout", "20", SDK_REQUIREMENT],
        capture_output=True,
        text=True,
        timeout=INSTALL_SECONDS,
    )
    if install.returncode != 0:
        output = install.stdout + install.stderr
        shutil.rmtree(SDK_VENV, ignore_errors=True)
        lines = output.splitlines()
        reason = next((line.strip() for line in lines if any(mark in line for mark in UNREACHABLE)), "")
        if reason:
            pytest.skip(f"the package index cannot be reached to install {SDK_REQUIREMENT}: {reason}")
        pytest.fail(f"pip install {SDK_REQUIREMENT} failed ({install.returncode}):\n{output}")
    MARKER.touch()
    return python

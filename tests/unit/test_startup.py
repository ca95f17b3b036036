"""Cold-start imports run with the cyclic GC paused, and leave it as it was (polos.aws.startup)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from polos.aws.startup import cold_imports

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ["api/app.py", "worker/app.py", "timers/app.py"]


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """What the tests change (collector on/off, frozen objects) is put back."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_inside_and_resumed_after(gc_restored: None) -> None:
    gc.enable()
    gc.unfreeze()
    with cold_imports():
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made)  # what the block made is frozen, not walked again


def test_a_failing_import_still_resumes_the_collector(gc_restored: None) -> None:
    gc.enable()
    with pytest.raises(ModuleNotFoundError), cold_imports():
        import polos_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled(gc_restored: None) -> None:
    gc.disable()
    with cold_imports():
        pass
    assert not gc.isenabled()


@pytest.mark.parametrize("handler", HANDLERS)
def test_handlers_import_with_the_collector_paused_then_resume_it(handler: str) -> None:
    """A fresh interpreter imports the entry point: no collection runs once its first import (the pause
    itself) is in (without it: ~100 during the import), the collector is on again after, and what the
    imports made is frozen."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT / "shared")])}
    module = handler.removesuffix(".py").replace("/", ".")
    probe = (
        "import gc, sys\n"
        "late = []\n"
        "def note(phase, info):\n"
        "    if phase == 'start':\n"
        "        late.append('polos.aws.startup' in sys.modules)\n"
        "gc.callbacks.append(note)\n"
        f"import {module}\n"
        "print(sum(late), len(late) < 10, gc.isenabled(), gc.get_freeze_count() > 10000)\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["0", "True", "True", "True"]

"""A sample of the reliability and waits tiers, run again under every AWS fault with fixed seeds (``make
chaos`` runs them all, with random seeds): the same tests, in a pytest of their own with
``POLOS_AWS_FAULTS=all``, which ``polos.testing`` and ``polos dev`` honour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (
    "tests/test_readme_example.py",
    "tests/waits/test_control.py::test_invoke_and_wait_resumes_the_parent_with_the_childs_result",
    "tests/waits/test_control.py::test_wait_for_event_matches_one_event_on_its_fields",
    "tests/waits/test_timers.py::test_duplicate_wake_ups_resume_the_run_once",
)
SEEDS = (1,)  # make chaos draws a new seed per stack; this one stays fixed (and the suite fast)

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_sample_passes_under_every_aws_fault(seed: int) -> None:
    env = {**os.environ, "POLOS_AWS_FAULTS": "all", "POLOS_FAULTS_SEED": str(seed)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SAMPLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    replay = f"POLOS_AWS_FAULTS=all POLOS_FAULTS_SEED={seed}"
    assert done.returncode == 0, f"under {replay}:\n{done.stdout[-6000:]}"

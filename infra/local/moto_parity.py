"""``make moto-parity``: moto's own DynamoDB and SQS test suites, run without and with the local stack's
patches of moto (all of :func:`infra.local.aws.install_speed_patches`: :mod:`infra.local.moto_query`,
:mod:`infra.local.moto_expressions`, :mod:`infra.local.moto_sqs`, :mod:`infra.local.moto_dispatch`,
:mod:`infra.local.moto_conditions`, :mod:`infra.local.moto_traversal`, :mod:`infra.local.moto_serialize`).

Fetches the source distribution of the installed moto version (``pip download --no-binary``; cached in
``.moto-parity/``), extracts ``tests/test_dynamodb``, ``tests/test_sqs`` and what they import, runs them
twice with pytest (moto as it is, then patched) and fails when any test's outcome differs or any test
failed. ``tests/test_sqs/test_sqs_integration.py`` is left out: it runs moto's own Lambda event source
mappings in Docker, which the local stack never uses (it emulates the mappings itself).

The same module is the pytest plugin of those runs (``-p infra.local.moto_parity``): it installs the patch
when ``POLOS_MOTO_PATCH=1`` and writes every test's outcome to ``POLOS_MOTO_OUTCOMES``.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404: runs pip and pytest with this interpreter, fixed arguments
import sys
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".moto-parity"
PATCH_VARIABLE = "POLOS_MOTO_PATCH"
OUTCOMES_VARIABLE = "POLOS_MOTO_OUTCOMES"
# What moto's DynamoDB tests import from its test tree, besides their own directory.
# pyproject.toml: moto's pytest settings (its markers).
SUPPORT_FILES = (
    "pyproject.toml",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/markers.py",
    "tests/test_s3/__init__.py",
)
SUITES = ("tests/test_dynamodb", "tests/test_sqs")
IGNORED = ("tests/test_sqs/test_sqs_integration.py",)

_outcomes: dict[str, str] = {}


# --- the pytest plugin -----------------------------------------------------------------------------------


def pytest_configure(config: Any) -> None:
    if os.environ.get(PATCH_VARIABLE) == "1":
        from infra.local.aws import install_speed_patches

        install_speed_patches()  # every patch the local stack's moto runs with


def pytest_runtest_logreport(report: Any) -> None:
    # A test's outcome is its call's, unless setup or teardown failed or skipped it.
    if report.when == "call" or report.outcome != "passed":
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        if _outcomes.get(report.nodeid) in (None, "passed"):
            _outcomes[report.nodeid] = f"{report.when}:{outcome}" if report.when != "call" else outcome


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get(OUTCOMES_VARIABLE)
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=1, sort_keys=True))


# --- the runner --------------------------------------------------------------------------------------------


def fetch(version: str) -> Path:
    """moto's test tree for ``version``, extracted under :data:`CACHE` (downloaded once)."""
    target = CACHE / f"moto-{version}"
    if all((target / suite).is_dir() for suite in SUITES) and all(
        (target / path).is_file() for path in SUPPORT_FILES
    ):
        return target
    CACHE.mkdir(exist_ok=True)
    archive = CACHE / f"moto-{version}.tar.gz"
    if not archive.is_file():
        subprocess.run(  # nosec B603: fixed argv, the version is the installed moto's
            [sys.executable, "-m", "pip", "download", f"moto=={version}", "--no-binary", ":all:", "--no-deps",
             "--quiet", "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
    prefix = f"moto-{version}/"
    wanted = (*SUPPORT_FILES, *(suite + "/" for suite in SUITES))
    with tarfile.open(archive) as tar:
        members = [
            member
            for member in tar.getmembers()
            if member.name.startswith(prefix)
            and any(member.name[len(prefix) :].startswith(path) for path in wanted)
        ]
        tar.extractall(CACHE, members=members, filter="data")
    return target


def run_suite(tree: Path, *, patched: bool, extra: list[str]) -> dict[str, str]:
    """Run the suite in a fresh interpreter; every test's outcome by node id."""
    outcomes_file = tree / f"outcomes-{'patched' if patched else 'moto'}.json"
    outcomes_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        PATCH_VARIABLE: "1" if patched else "0",
        OUTCOMES_VARIABLE: str(outcomes_file),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tree)]),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "TEST_SERVER_MODE"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "pytest", *SUITES, *(f"--ignore={path}" for path in IGNORED),
        "-q", "-p", "no:cacheprovider",
        "-p", "infra.local.moto_parity",
        "-o", "addopts=", "-o", "timeout=300", "--rootdir", str(tree), "-W", "ignore::DeprecationWarning",
        *extra,
    ]  # fmt: skip
    print(f"moto-parity: {'patched' if patched else 'moto'}: {' '.join(command[2:])}", flush=True)
    subprocess.run(command, cwd=tree, env=env, check=False)  # nosec B603: fixed argv, this interpreter
    if not outcomes_file.is_file():
        raise SystemExit(f"moto-parity: the {'patched' if patched else 'moto'} run reported no outcomes")
    outcomes: dict[str, str] = json.loads(outcomes_file.read_text())
    return outcomes


def compare(moto: dict[str, str], patched: dict[str, str]) -> list[str]:
    """Every difference, and every test that did not pass or skip in either run."""
    problems = []
    for test in sorted(set(moto) | set(patched)):
        before, after = moto.get(test, "missing"), patched.get(test, "missing")
        if before != after:
            problems.append(f"{test}: moto {before}, patched {after}")
        elif after not in ("passed", "skipped", "xfailed", "setup:skipped"):
            problems.append(f"{test}: {after} in both runs")
    return problems


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    version = metadata.version("moto")
    tree = fetch(version)
    moto = run_suite(tree, patched=False, extra=extra)
    patched = run_suite(tree, patched=True, extra=extra)
    problems = compare(moto, patched)
    passed = sum(1 for outcome in patched.values() if outcome == "passed")
    for problem in problems:
        print(f"moto-parity: {problem}")
    verdict = "FAIL" if problems or not patched else "PASS"
    print(
        f"moto-parity: moto {version}, {len(patched)} tests of {', '.join(SUITES)}, {passed} passed patched, "
        f"{len(problems)} differences or failures: {verdict}"
    )
    return 1 if verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())

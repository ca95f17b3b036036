"""The documentation's examples, run over HTTP against ``polos dev`` serving the example app."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys

import pytest
from helpers.dev_process import ROOT, DevProcess, clean_env
from polos.app import App

from infra.local.demo import Demo

pytestmark = pytest.mark.e2e


def test_every_seed_flow_completes(seed_server: DevProcess, example_app: App) -> None:
    out = io.StringIO()
    demo = Demo(seed_server.client(), example_app, seed_server.api_key, out)
    asyncio.run(demo.run_all())
    by_what = {expected.what: expected for expected in demo.expected}
    not_ok = {what: expected.run for what, expected in by_what.items() if not expected.ok}
    assert not not_ok, not_ok
    assert (
        len(demo.expected) == 17
    )  # the documentation's 13 runs; waiting for a time, an approval, a payment (+ its child)
    signup = by_what["signup published by create_user"].run
    invoked = by_what["direct invocation"].run
    assert signup is not None and invoked is not None
    assert signup["result"] == {"status": "onboarded", "user_id": invoked["result"]["user_id"]}
    assert by_what["10 analytics events"].run["result"] == {"processed": 10}  # type: ignore[index]
    assert by_what["5 orders"].run["result"] == {"handler": "batched", "count": 5}  # type: ignore[index]
    assert [s["key"] for s in by_what["high_priority event"].run["steps"]] == ["alert"]  # type: ignore[index]
    assert by_what["low_priority event (skipped)"].run["steps"] == []  # type: ignore[index]
    approval = by_what["suspended, approved by a resume"].run
    assert approval is not None and approval["result"] == {"request_id": "exp_42", "approved": True}
    order = by_what["waits for its payment event"].run
    child = by_what["child run of the order run"].run
    assert order is not None and child is not None
    assert order["result"]["receipt"] == {"order_id": "ord_77", "amount": 42.0}  # its own payment's
    assert child["parent_run_id"] == order["run_id"] and order["children"] == [child["run_id"]]


def test_polos_demo_exits_zero() -> None:
    """README's "run" command: `polos demo` starts its own stack and checks every run."""
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 17 runs; under the `pollers` fault (make chaos) a batch may be split, each part a run of its own.
    completed = re.search(r"All (\d+) runs completed as expected", result.stdout)
    splits = result.stdout.count("(split by the pollers)")
    assert completed is not None and int(completed.group(1)) == 17 + splits, result.stdout
    assert "triggers on its size" in result.stdout

"""``polos runs --status queued`` (every status of the runs API) and how a queued run's wait reads."""

from __future__ import annotations

from typing import get_args

import pytest
from polos.runtime.status import RunStatus

from infra.cli import runs
from infra.cli.main import build_parser


@pytest.mark.parametrize("status", get_args(RunStatus))
def test_polos_runs_takes_every_status_of_the_runs_api(status: str) -> None:
    args = build_parser().parse_args(["runs", "--status", status])
    assert args.status == status


def test_a_queued_run_reads_as_waiting_for_a_slot_of_its_queue() -> None:
    keyed = {"kind": "concurrency", "queue": "emails", "key": "cus-42"}
    assert runs._waiting(keyed) == "waits for a slot of queue emails key cus-42"
    assert runs._waiting({**keyed, "key": None}) == "waits for a slot of queue emails"

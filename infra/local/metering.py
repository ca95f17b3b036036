"""``polos dev`` meters every AWS request its functions make (``infra.metering.meter``) and keeps, per shared
partition key, the units it took (``infra.metering.capacity.Ledger``), written each second to
``polos-dev-capacity.json`` in the temporary directory, where ``polos capacity`` reads it (also after the
server stopped: it reports the session that ran last). It also prices each run by the requests made for it
(:mod:`polos.aws.attribution`) and answers :mod:`polos.api.costs` (the run's ``cost`` in the runs API)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from polos.aws import settings

from infra.metering import prices
from infra.metering.capacity import Ledger
from infra.metering.meter import Call, Meter
from infra.metering.pricing import request_usd

LEDGER_FILE_NAME = "polos-dev-capacity.json"


def ledger_path() -> Path:
    """``$TMPDIR/polos-dev-capacity.json``."""
    return Path(tempfile.gettempdir()) / LEDGER_FILE_NAME


@dataclass
class RunCost:
    """What one run's requests cost so far."""

    workflow_id: str
    requests: int = 0
    by_service: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def view(self) -> dict[str, Any]:
        """The run's ``cost`` in the runs API."""
        return {
            "usd": sum(self.by_service.values()),
            "requests": self.requests,
            "by_service": dict(self.by_service),
        }


class SessionMeter:
    """Meters the stack's AWS clients (``polos.aws.settings``) from :meth:`start` on; :meth:`save` folds what
    was metered since the last call into the ledger and the runs' costs, and writes the ledger (atomically)
    when anything changed."""

    def __init__(self, endpoint_url: str, path: Path) -> None:
        # Item sizes are read through a client of its own, so those reads are not metered.
        self._meter = Meter(shadow=boto3.client("dynamodb", endpoint_url=endpoint_url))
        self._path = path
        self._lock = threading.Lock()
        self.ledger = Ledger()
        self.runs: dict[str, RunCost] = {}
        self._unwritten = False  # the ledger holds calls the file does not

    def start(self) -> None:
        self._meter.attach(settings.dynamodb(), settings.sqs())
        self._write()  # a new session: the last session's figures are gone

    def stop(self) -> None:
        self.save()
        self._meter.detach()

    def save(self) -> None:
        with self._lock:
            self._fold()
            if self._unwritten:
                self._write()
                self._unwritten = False

    def _fold(self) -> None:
        calls = self._meter.take()
        if not calls:
            return
        self.ledger.add(calls)
        for call in calls:
            self._charge(call)
        self._unwritten = True

    def _charge(self, call: Call) -> None:
        if call.run is None:  # not made for a run: a publish, a poll, a timer sweep
            return
        cost = self.runs.setdefault(call.run.run_id, RunCost(call.run.workflow_id))
        cost.requests += 1
        cost.by_service[call.service] += request_usd(call)

    # -- polos.api.costs.CostSource -----------------------------------------------------------------
    def run_cost(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._fold()
            cost = self.runs.get(run_id)
            return None if cost is None else cost.view()

    def workflow_cost(self, workflow_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._fold()
            runs = [cost for cost in self.runs.values() if cost.workflow_id == workflow_id]
        if not runs:
            return None
        usd = sum(sum(cost.by_service.values()) for cost in runs)
        return {"usd_per_million_runs": usd / len(runs) * prices.MILLION, "runs_metered": len(runs)}

    def _write(self) -> None:
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        temporary.write_text(self.ledger.to_json())
        os.replace(temporary, self._path)

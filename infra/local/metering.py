"""``polos dev`` meters every AWS request its functions make (``infra.metering.meter``) and keeps, per shared
partition key, the units it took (``infra.metering.capacity.Ledger``), written each second to
``polos-dev-capacity.json`` in the temporary directory, where ``polos capacity`` reads it (also after the
server stopped: it reports the session that ran last)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import boto3
from polos.aws import settings

from infra.metering.capacity import Ledger
from infra.metering.meter import Meter

LEDGER_FILE_NAME = "polos-dev-capacity.json"


def ledger_path() -> Path:
    """``$TMPDIR/polos-dev-capacity.json``."""
    return Path(tempfile.gettempdir()) / LEDGER_FILE_NAME


class SessionMeter:
    """Meters the stack's AWS clients (``polos.aws.settings``) from :meth:`start` on; :meth:`save` folds what
    was metered since the last call into the ledger and writes it (atomically) when anything changed."""

    def __init__(self, endpoint_url: str, path: Path) -> None:
        # Item sizes are read through a client of its own, so those reads are not metered.
        self._meter = Meter(shadow=boto3.client("dynamodb", endpoint_url=endpoint_url))
        self._path = path
        self._lock = threading.Lock()
        self.ledger = Ledger()

    def start(self) -> None:
        self._meter.attach(settings.dynamodb(), settings.sqs())
        self._write()  # a new session: the last session's figures are gone

    def stop(self) -> None:
        self.save()
        self._meter.detach()

    def save(self) -> None:
        calls = self._meter.take()
        if not calls:
            return
        with self._lock:
            self.ledger.add(calls)
            self._write()

    def _write(self) -> None:
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        temporary.write_text(self.ledger.to_json())
        os.replace(temporary, self._path)

"""Readable output for ``polos dev``: one line per request and per run transition.

The functions log JSON (Powertools) as in the cloud; under ``polos dev`` those lines go to a file and the
console shows what a developer reads: the executor's run transitions (the records that carry a
``run_id``), warnings and errors with their traceback, and the gateway's request lines.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter


def _stamp(created: float | None = None) -> str:
    moment = time.time() if created is None else created
    return time.strftime("%H:%M:%S", time.localtime(moment)) + f".{int(moment % 1 * 1000):03d}"


class ConsoleLines(logging.Handler):
    """Writes run transitions (DEBUG and up: a run's start and completion are DEBUG lines), warnings and
    errors as single readable lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format_line(record)
            if line:
                self._stream.write(line)
                self._stream.flush()
        except Exception:
            self.handleError(record)

    @staticmethod
    def format_line(record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        if run_id is None and record.levelno < logging.WARNING:
            return ""
        parts = [_stamp(record.created)]
        if run_id is not None:
            parts.append(f"run {run_id} {getattr(record, 'workflow_id', '?')}:")
        else:
            parts.append(record.levelname)
        parts.append(record.getMessage())
        attempt = getattr(record, "attempt", None)
        if attempt is not None:
            parts.append(f"(attempt {attempt})")
        error_type, error = getattr(record, "error_type", None), getattr(record, "error", None)
        if error is not None:
            parts.append(f"- {error_type}: {error}" if error_type else f"- {error}")
        line = " ".join(parts) + "\n"
        if record.exc_info and record.levelno >= logging.ERROR:
            trace = logging.Formatter().formatException(record.exc_info)
            line += "".join(f"    {row}\n" for row in trace.splitlines())
        return line


class RequestLine:
    """``HH:MM:SS.mmm POST /api/v1/events/publish 200 12 ms``"""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, method: str, path: str, status: int, millis: float) -> None:
        self._stream.write(f"{_stamp()} {method} {path} {status} {millis:.0f} ms\n")
        self._stream.flush()


def route_logs(log_file: Path, console: TextIO | None = sys.stdout, faults: TextIO | None = None) -> None:
    """Send the functions' JSON logs to ``log_file`` and readable lines to ``console`` (none: ``None``; with a
    console the functions log at DEBUG);
    the local stack's own warnings (stdlib logging) go to ``console``, else to stderr; each injected AWS
    fault (``--aws-faults``, logged at DEBUG) to ``faults``."""
    json_stream = log_file.open("w", encoding="utf-8")  # this run's logs only
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        powertools = [h for h in logger.handlers if isinstance(h.formatter, BasePowertoolsFormatter)]
        for handler in powertools:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(json_stream)
        if powertools and console is not None:
            logger.addHandler(ConsoleLines(console))
            # Each run's lines, its completion included: DEBUG on AWS, where CloudWatch bills every line.
            logger.setLevel(logging.DEBUG)
    local = logging.StreamHandler(console or sys.stderr)
    local.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    local.setLevel(logging.WARNING)
    logging.getLogger("infra").addHandler(local)
    if faults is not None:
        fault_lines = logging.StreamHandler(faults)
        fault_lines.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
        injector = logging.getLogger("infra.local.faults.injector")
        injector.setLevel(logging.DEBUG)
        injector.addHandler(fault_lines)
        injector.propagate = False

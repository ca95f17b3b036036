"""CloudWatch Logs ingestion of the bench's Lambda invocations: every byte a handler writes to stdout, by
invocation, plus the START / END / REPORT lines Lambda writes itself.

``TAP`` stands in for stdout for the whole bench (``tapped()``): Powertools' Logger holds the stream it was
built with, so every stream handler writing to stdout is pointed at the tap too. Each write is counted under
the meter tag of the invocation that made it (a context variable, so threads the worker starts count too);
writes outside an invocation are dropped. Nothing is kept but counts.

Billing (https://aws.amazon.com/cloudwatch/pricing/, "Logs", Standard: $0.50 per GB ingested): a log event
is one line, billed as its UTF-8 bytes (the log group's ``IncomingBytes``). The 26 bytes per event that
``PutLogEvents`` adds are a *batch size* rule ("the sum of all event messages in UTF-8, plus 26 bytes for each
log event" may not exceed 1 MB, https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html),
not a billing rule: the bench counted them until issue 26; :attr:`LogVolume.with_batch_overhead` keeps the old
figure for the lever table.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from infra.metering.meter import current_tag

EVENT_OVERHEAD_BYTES = 26
_REQUEST_ID = "8f5a3c1e-2b7d-4e90-a1c4-6d2f0b9e7a35"  # a request id's length (36); the value is immaterial


@dataclass(frozen=True)
class LogVolume:
    """Lines and bytes one invocation wrote (handler output and Lambda's own lines)."""

    events: int
    message_bytes: int
    metrics: frozenset[str] = (
        frozenset()
    )  # CloudWatch metrics its EMF documents emitted (:func:`emf_metrics`)

    @property
    def billed_bytes(self) -> int:
        return self.message_bytes

    @property
    def with_batch_overhead(self) -> int:
        """Bytes as ``PutLogEvents`` sizes a batch (+26 per event): what the bench billed before issue 26."""
        return self.message_bytes + EVENT_OVERHEAD_BYTES * self.events


def platform_lines(memory_mb: int, duration_ms: float, billed_ms: int, max_memory_mb: int = 90) -> list[str]:
    """What Lambda writes around every invocation (text log format, the template's default)."""
    return [
        f"START RequestId: {_REQUEST_ID} Version: $LATEST",
        f"END RequestId: {_REQUEST_ID}",
        f"REPORT RequestId: {_REQUEST_ID}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed_ms} ms\t"
        f"Memory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB\t",
    ]


def emf_metrics(line: str) -> set[str]:
    """The CloudWatch custom metrics one EMF document emits: ``namespace|name|dimension=value,...`` for each
    metric name and dimension set (each combination is billed as a metric of its own); none for others."""
    if '"_aws"' not in line:
        return set()
    try:
        document = json.loads(line)
        directives = document["_aws"]["CloudWatchMetrics"]
    except (ValueError, KeyError, TypeError):
        return set()
    found = set()
    for directive in directives:
        for names in directive.get("Dimensions") or [[]]:
            dimensions = ",".join(f"{name}={document.get(name)}" for name in names)
            for metric in directive.get("Metrics", []):
                found.add(f"{directive.get('Namespace')}|{metric.get('Name')}|{dimensions}")
    return found


def volume_of(lines: list[str]) -> LogVolume:
    return LogVolume(len(lines), sum(len(line.encode()) for line in lines))


class LogTap(io.TextIOBase):
    """A write-only text stream counting lines and bytes per meter tag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: Counter[str] = Counter()
        self._events: Counter[str] = Counter()
        self._metrics: dict[str, set[str]] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        tag = current_tag()
        if tag is not None:
            data = text.encode()
            metrics = emf_metrics(text)
            with self._lock:
                self._bytes[tag] += len(data) - data.count(b"\n")  # the newline ends an event; not billed
                self._events[tag] += data.count(b"\n")
                if metrics:
                    self._metrics.setdefault(tag, set()).update(metrics)
        return len(text)

    def take(self, tag: str) -> LogVolume:
        """What ``tag`` wrote so far, forgotten here."""
        with self._lock:
            metrics = frozenset(self._metrics.pop(tag, ()))
            return LogVolume(self._events.pop(tag, 0), self._bytes.pop(tag, 0), metrics)


TAP = LogTap()


def _stdout_handlers() -> Iterator[logging.StreamHandler]:  # type: ignore[type-arg]
    loggers = [
        logging.getLogger(),
        *(value for value in logging.root.manager.loggerDict.values() if isinstance(value, logging.Logger)),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stdout__, sys.stdout):
                yield handler


def tap_loggers() -> None:
    """Point every stream handler that writes to stdout at ``TAP`` (call after the handlers are imported)."""
    for handler in list(_stdout_handlers()):
        handler.setStream(TAP)


@contextlib.contextmanager
def tapped() -> Iterator[None]:
    """stdout is ``TAP`` inside the block (EMF metrics are printed to stdout, as in Lambda)."""
    with contextlib.redirect_stdout(TAP):
        tap_loggers()
        yield

"""Peak memory of the API on a 6 MB publish and of the worker on its largest batch, against the template.

Each figure comes from fresh subprocesses, so nothing the bench did before counts:
- the handler's import: the peak RSS (``VmHWM``) of a process that only imports it (as ``bench.coldstart``
  does); not ``ru_maxrss``, which a child forked from this process starts at this process's size;
- the invocation: a process with the app on the local stack (``bench.stack.MeteredStack``), moto serving
  from a process of its own as in ``polos dev``, traces Python's allocations (``tracemalloc``) from just
  before the handler is called to its return and reports the peak: the handler's own allocations, boto3's
  requests and answers included, and none of moto's (moto deep-copies its tables for every transaction:
  in-process, a 2,000-event batch had traced 2.6 GB of moto's copies).
Estimated peak RSS in Lambda = import RSS + invocation peak; the target is half the function's memory size.

The largest batch: a batch workflow of ``batch_size`` 10,000 and the maximum window (300 s), delivered
10,000 events of 1 KB in one invocation. The 6 MB publish: 1,000 events (the most one request may carry)
of ~6 KB each, a body just under the API's 6 MB limit.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import coldstart

ROOT = Path(__file__).resolve().parent.parent
API_EVENTS = 1000
API_EVENT_DATA_BYTES = 6 * 1024
# The largest batch that can reach the worker: an event source mapping may gather up to 10,000 messages, but
# Lambda takes at most 6 MB of event per invocation, and an SQS record holding a 1 KB event is about 2.5 KB
# (the message, ASCII-escaped, plus the record's attributes): 2,000 records fill ~5 MB.
WORKER_EVENTS = 2_000


@dataclass(frozen=True)
class MemoryUse:
    """One function's peak memory, estimated for Lambda."""

    function: str
    case: str
    memory_mb: int
    import_mb: float
    invocation_peak_mb: float

    @property
    def estimate_mb(self) -> float:
        return self.import_mb + self.invocation_peak_mb

    @property
    def limit_mb(self) -> float:
        return self.memory_mb / 2

    @property
    def met(self) -> bool:
        return self.estimate_mb <= self.limit_mb


def _import_mb(handler: str) -> float:
    """Peak RSS (MB) of a fresh process that imports ``functions/<handler>/app.py`` and nothing else."""
    (target,) = [t for t in coldstart.targets() if t.label == f"functions/{handler}/app.py"]
    code = (
        f"import sys\nsys.path[:0] = {list(target.paths)!r}\nimport app\n"
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        env=coldstart.lambda_env(),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return int(done.stdout.split()[-1]) / 1024  # kB


def _invocation_mb(case: str, events: int) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", case, "--events", str(events)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory benchmark {case} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])


def measure(smoke: bool = False) -> list[MemoryUse]:
    """Both figures (``smoke``: a tenth of the sizes, for the test suite)."""
    from infra.model import API_FUNCTION, WORKER_FUNCTION

    api_events, worker_events = (
        (API_EVENTS // 10, WORKER_EVENTS // 50) if smoke else (API_EVENTS, WORKER_EVENTS)
    )
    return [
        MemoryUse(
            "API",
            f"publish of {api_events} events x {API_EVENT_DATA_BYTES // 1024} KB",
            API_FUNCTION.memory_mb,
            _import_mb("api"),
            _invocation_mb("api", api_events),
        ),
        MemoryUse(
            "worker",
            f"batch of {worker_events} events x 1 KB, batch_size 10,000, 300 s window",
            WORKER_FUNCTION.memory_mb,
            _import_mb("worker"),
            _invocation_mb("worker", worker_events),
        ),
    ]


# -- the subprocess ---------------------------------------------------------------------------------------
Handler = Callable[[dict[str, Any], Any], Any]


class _Peak:
    """Wraps a handler: the peak of Python allocations made during its calls."""

    def __init__(self) -> None:
        self.bytes = 0

    def wrap(self, handler: Handler) -> Handler:
        def traced(event: dict[str, Any], context: Any) -> Any:
            tracemalloc.start()
            try:
                return handler(event, context)
            finally:
                self.bytes = max(self.bytes, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()

        return traced


def _run(case: str, events: int) -> float:
    from bench.logs import tapped
    from bench.memory_app import LARGEST, app
    from bench.stack import Handlers, MeteredStack, aws_in_moto_process, polos_handlers
    from bench.workload import sample_event
    from infra.local.stack import MAX_VISIBILITY_TIMEOUT, StackOptions
    from infra.metering.meter import Meter

    peak = _Peak()

    def handlers(model: Any) -> Handlers:
        made = polos_handlers(model)
        if case == "api":
            return Handlers(api=peak.wrap(made.api), worker=made.worker, checks_keys=made.checks_keys)
        return Handlers(api=made.api, worker=peak.wrap(made.worker), checks_keys=made.checks_keys)

    # Collecting a batch this large takes moto minutes: with the default visibility timeout its first
    # messages would come back (and be received again) before the batch is complete.
    options = StackOptions(visibility_timeout=MAX_VISIBILITY_TIMEOUT)
    with (
        tempfile.TemporaryDirectory() as tmp,
        aws_in_moto_process(),
        tapped(),
        MeteredStack(
            app(), Path(tmp), Meter(), handlers, app_target="bench.memory_app", options=options
        ) as stack,
    ):
        (mapping,) = stack.mappings
        if case == "api":
            published = [sample_event(n, data_bytes=API_EVENT_DATA_BYTES) for n in range(events)]
            stack.publish(LARGEST.topic, published)
        else:
            for start in range(0, events, API_EVENTS):
                stack.publish(
                    LARGEST.topic, [sample_event(n) for n in range(start, min(events, start + API_EVENTS))]
                )
            delivery = mapping.poll(wait_seconds=0, flush=True)
            if delivery is None or len(delivery.messages) != events or delivery.failed or delivery.error:
                got = "nothing"
                if delivery is not None:
                    got = f"{len(delivery.messages)} messages, {len(delivery.failed)} failed"
                    got += f", error {delivery.error!r}"
                raise RuntimeError(f"the worker was not delivered {events} events in one batch: {got}")
    return peak.bytes / 1024 / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("case", choices=("api", "worker"))
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)
    peak_mb = _run(args.case, args.events)
    print(
        json.dumps(
            {
                "case": args.case,
                "peak_mb": round(peak_mb, 1),
                "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()

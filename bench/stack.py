"""A metered deployment in one process: the local stack (``infra.local.stack.LocalStack``: the app's tables
and queues, the HTTP API gateway, the event source mappings) with every AWS request going through a
:class:`~infra.metering.meter.Meter` and every Lambda invocation recorded as a :class:`LambdaCall`.

Each invocation runs under its own meter tag (``ApiFunction:7``), so its requests can be told apart, both to
bill its duration and to inject a crash into one function only. The baselines plug their own handlers into
the same gateway and mappings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polos.app import App
from polos.aws import settings

from bench.logs import TAP, LogVolume, platform_lines, tap_loggers, volume_of
from infra.local.apigw import ApiGateway, HttpRequest, HttpResponse
from infra.local.aws import (
    MotoServer,
    apply_environment,
    fake_credentials,
    install_speed_patches,
    one_request_at_a_time,
)
from infra.local.functions import LocalContext, load_handler
from infra.local.mapping import EventSourceMapping
from infra.local.stack import LocalStack, StackOptions
from infra.metering import prices
from infra.metering.meter import Call, Meter
from infra.model import WORKER_FUNCTION, AppModel, FunctionSpec, build_model

# Lambda time spent waiting on an AWS request in the cloud (an in-region DynamoDB or SQS round trip);
# stands in for the time moto took in-process, which says nothing about the cloud.
ASSUMED_AWS_CALL_MS = 8.0
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). Compute measured here on one
# core of this machine takes 1769 / memory times as long below that (a single thread gains nothing above).
FULL_VCPU_MB = 1769
TRACE_ENV = "_X_AMZN_TRACE_ID"
LAMBDA_TRACE_HEADER = "Root=1-6745a1b2-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0;Lineage=1"

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class LambdaCall:
    """One Lambda invocation and what it is billed for.

    Its duration in the cloud is modelled as its own compute, measured here (wall time minus the time some
    AWS request was in flight), plus ``ASSUMED_AWS_CALL_MS`` for each *wave* of AWS requests: requests that
    ran concurrently here (the worker runs a batch's records concurrently) overlap in the cloud too, so
    ``waves`` = requests / the most that were in flight at once.
    """

    function: str
    memory_mb: int
    wall_seconds: float
    aws_busy_seconds: float
    aws_calls: int
    aws_waves: int
    log: LogVolume = field(default_factory=lambda: LogVolume(0, 0))
    tag: str = ""  # the meter tag its requests were made under

    @classmethod
    def of(cls, spec: FunctionSpec, wall_seconds: float, calls: list[Call], log: LogVolume) -> LambdaCall:
        spans = sorted((call.started, call.started + call.seconds) for call in calls)
        busy, end, in_flight, most = 0.0, float("-inf"), 0, 0
        for start, stop in spans:
            busy += max(0.0, stop - max(start, end))
            end = max(end, stop)
        for _, change in sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans]):
            in_flight += change
            most = max(most, in_flight)
        waves = math.ceil(len(calls) / most) if most else 0
        made = cls(spec.logical_id, spec.memory_mb, wall_seconds, busy, len(calls), waves)
        platform = volume_of(platform_lines(spec.memory_mb, made.duration_ms, made.billed_ms))
        total = LogVolume(
            log.events + platform.events, log.message_bytes + platform.message_bytes, log.metrics
        )
        return dataclasses.replace(made, log=total)

    @property
    def cpu_factor(self) -> float:
        """How much longer compute takes at this memory size than on one full core."""
        return max(1.0, FULL_VCPU_MB / self.memory_mb)

    @property
    def duration_ms(self) -> float:
        """Modelled cloud duration: own compute at this memory's CPU share, plus the AWS round trips."""
        own = max(0.0, self.wall_seconds - self.aws_busy_seconds) * 1000 * self.cpu_factor
        return own + self.aws_waves * ASSUMED_AWS_CALL_MS

    @property
    def billed_ms(self) -> int:
        """Modelled cloud duration, rounded up to Lambda's 1 ms billing granularity."""
        return max(1, math.ceil(self.duration_ms))

    @property
    def gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.billed_ms / 1000


@dataclass
class Usage:
    """What the stack was billed for apart from the AWS requests the meter holds."""

    http_billed: int = 0
    lambdas: list[LambdaCall] = field(default_factory=list)


@dataclass(frozen=True)
class Handlers:
    """A system's Lambda handlers ``(event, context)``, made once the stack's environment is set.
    ``checks_keys``: the API handler refuses requests without a valid API key (Polos; not the baselines)."""

    api: Handler
    worker: Handler
    checks_keys: bool = False


def forget_worker_app() -> Handler:
    """The worker handler, made to import the app ``POLOS_APP`` names now: its module imports its app once
    per process (``functools.cache``), and one process here runs stacks of several apps."""
    worker = load_handler(WORKER_FUNCTION)
    cached_app = getattr(sys.modules[worker.__module__], "app", None)
    if cached_app is not None and hasattr(cached_app, "cache_clear"):
        cached_app.cache_clear()
    return worker


def polos_handlers(model: AppModel) -> Handlers:
    """Polos's own handlers (``functions/*/app.py``), imported the way Lambda imports them."""
    return Handlers(
        api=_serial(load_handler(model.function("serves_api"))),
        worker=forget_worker_app(),
        checks_keys=True,
    )


def _serial(handler: Handler) -> Handler:
    """One invocation at a time, like one execution environment (see ``infra.local.functions``)."""
    lock = threading.Lock()

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return invoke


@contextlib.contextmanager
def aws_in_process() -> Iterator[None]:
    """moto's in-process mock with fake credentials (the environment is restored afterwards)."""
    from moto import mock_aws

    install_speed_patches()  # as under `polos dev`: the bench's runs must not slow down as the tables grow
    previous = apply_environment(fake_credentials(None))
    try:
        with mock_aws(), one_request_at_a_time():
            settings.reset()
            yield
    finally:
        apply_environment(previous)
        settings.reset()


@contextlib.contextmanager
def aws_in_moto_process() -> Iterator[None]:
    """moto in a process of its own (as under ``polos dev``), with fake credentials: what this process
    allocates is the code under test's alone, as in Lambda, where AWS is remote."""
    server = MotoServer()
    previous = apply_environment(fake_credentials(server.start()))
    try:
        settings.reset()
        yield
    finally:
        apply_environment(previous)
        settings.reset()
        server.stop()


class MeteredStack:
    """An app on the local stack (moto in-process unless boto3 points elsewhere), every request metered.
    Use as a context manager; the environment is restored on exit."""

    def __init__(
        self,
        app: App,
        state_dir: Path,
        meter: Meter,
        make_handlers: Callable[[AppModel], Handlers],
        *,
        app_target: str | None = None,
        options: StackOptions | None = None,
    ) -> None:
        self.meter = meter
        self.usage = Usage()
        self._counter = itertools.count(1)
        self._invokers: dict[str, Callable[..., Any]] = {}
        self.last_events: dict[str, dict[str, Any]] = {}
        model = self.model = build_model(app)
        self._handlers: Handlers | None = None
        self._make_handlers = make_handlers
        worker_spec = model.function("consumes_queues")
        self.local = LocalStack.create(
            app,
            state_dir=state_dir,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),  # where boto3 points (None: in-process)
            app_target=app_target,
            options=options,
            worker=self._metered(worker_spec, lambda: self.handlers.worker),
            prefix=f"b{secrets.token_hex(3)}-",  # unique: several stacks may share one moto
        )
        handlers = self.handlers
        self.api_key = self.local.create_api_key(name="bench") if handlers.checks_keys else ""
        self.local.gateway = ApiGateway(
            model.routes, api=self._metered(model.function("serves_api"), lambda: self.handlers.api)
        )
        meter.attach(settings.dynamodb(), settings.sqs())
        # Metrics as deployed: Powertools prints one EMF document per flush to stdout, i.e. the log. (The
        # local stack turns them off for its concurrent mapping threads; the bench drains one at a time.)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
        # Lambda sets the X-Ray trace header for every invocation, traced or not; Powertools' Logger puts its
        # root on every line (``xray_trace_id``), so the bench's lines carry one too.
        self._trace_before = os.environ.get(TRACE_ENV)
        os.environ[TRACE_ENV] = LAMBDA_TRACE_HEADER
        tap_loggers()

    @property
    def handlers(self) -> Handlers:
        if self._handlers is None:
            self._handlers = self._make_handlers(self.model)
        return self._handlers

    @property
    def mappings(self) -> list[EventSourceMapping]:
        return self.local.mappings

    def __enter__(self) -> MeteredStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.meter.detach()
        self.local.close()
        if self._trace_before is None:
            os.environ.pop(TRACE_ENV, None)
        else:
            os.environ[TRACE_ENV] = self._trace_before

    def reset_usage(self) -> None:
        """Forget what was billed so far (e.g. a warm-up)."""
        self.meter.reset()
        self.usage = Usage()

    # -- Lambda -------------------------------------------------------------------------------------
    def _metered(self, spec: FunctionSpec, handler: Callable[[], Handler]) -> Callable[..., Any]:
        def invoke(event: dict[str, Any], request_id: str | None = None) -> Any:
            tag = f"{spec.logical_id}:{next(self._counter)}"
            self.last_events[spec.logical_id] = event
            started = time.perf_counter()
            try:
                with self.meter.tag(tag):
                    return handler()(event, LocalContext(spec, request_id))
            finally:
                wall = time.perf_counter() - started
                call = LambdaCall.of(spec, wall, self.meter.select(tag=tag), TAP.take(tag))
                call = dataclasses.replace(call, tag=tag)
                self.usage.lambdas.append(call)

        self._invokers[spec.logical_id] = invoke
        return invoke

    def sweep_timers(self) -> tuple[LambdaCall, list[Call]]:
        """One scheduled invocation of the timers function (as EventBridge Scheduler makes each minute),
        metered: its Lambda bill and its AWS requests."""
        spec = self.model.function("sweeps_timers")
        if spec.logical_id not in self._invokers:
            self._metered(spec, functools.cache(lambda: load_handler(spec)))
        before = len(self.usage.lambdas)
        self._invokers[spec.logical_id]({})
        (call,) = self.usage.lambdas[before:]
        del self.usage.lambdas[before:]  # a monthly line (bench.fixed), not the scenario's
        return call, self.meter.select(tag=call.tag)

    def invoke_again(self, function: str) -> Any:
        """Deliver ``function``'s last event once more (e.g. a duplicate SQS delivery), metered."""
        return self._invokers[function](self.last_events[function])

    # -- HTTP API -----------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        """One HTTP API request (billed per started 512 KB)."""
        raw = b"" if body is None else json.dumps(body).encode()
        sent = {"content-type": "application/json", "authorization": f"Bearer {self.api_key or 'none'}"}
        sent.update({name.lower(): value for name, value in (headers or {}).items()})
        self.usage.http_billed += max(1, math.ceil(len(raw) / prices.HTTP_API_CHUNK_BYTES))
        return self.local.gateway.handle(HttpRequest(method, path, list(sent.items()), raw))

    def publish(self, topic: str, events: list[dict[str, Any]], idempotency_key: str | None = None) -> Any:
        """``POST /api/v1/events/publish``; the answer's JSON (``RuntimeError`` unless 200)."""
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        answer = self.request("POST", "/api/v1/events/publish", {"topic": topic, "events": events}, headers)
        if answer.status != 200:
            raise RuntimeError(f"publish answered {answer.status}: {answer.body[:500]!r}")
        return answer.json()

    # -- event source mappings ----------------------------------------------------------------------
    def drain(self, workflow_ids: list[str] | None = None, max_rounds: int = 100_000) -> int:
        """Poll the mappings (all, or those of ``workflow_ids``) like Lambda's pollers, one batch per
        receive, until a round delivers nothing; returns the records delivered. Any failure is an error."""
        chosen = [m for m in self.mappings if workflow_ids is None or m.spec.workflow_id in workflow_ids]
        delivered = 0
        for _ in range(max_rounds):
            before = delivered
            for mapping in chosen:
                with self.meter.tag("esm"):
                    delivery = mapping.poll(wait_seconds=0)
                if delivery is None:
                    continue
                if delivery.error is not None or delivery.failed:
                    raise RuntimeError(
                        f"{len(delivery.failed)} of {len(delivery.messages)} records to "
                        f"{mapping.spec.workflow_id} were left for redelivery (error: {delivery.error!r}); "
                        "the worker's log says why"
                    )
                delivered += len(delivery.messages)
            if delivered == before:
                return delivered
        raise RuntimeError(f"queues still not drained after {max_rounds} rounds")

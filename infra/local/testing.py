"""The harness behind :mod:`polos.testing`: the whole product in-process on moto, with failure injection.

``local_stack(app)`` creates the app's tables and queues in moto's in-process AWS mock, exactly as the
template would deploy them, and gives a :class:`Stack`: publish and invoke through the real API
handler, ``drain()`` the queues through the real worker (the event source mapping emulation of
``polos dev``), read runs and events as the HTTP API shows them, and inject failures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from polos.aws import settings
from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS
from polos.errors import PolosAPIError
from polos.runtime.steps import set_step_hooks

if TYPE_CHECKING:
    from polos.app import App
    from polos.definition import Workflow

    from infra.local.mapping import Delivery
    from infra.local.stack import LocalStack

__all__ = ["InjectedFailure", "Response", "SimulatedCrash", "Stack", "local_stack"]

T = TypeVar("T")


class InjectedFailure(Exception):
    """What :meth:`Stack.fail_step` makes a step's function raise."""


class SimulatedCrash(BaseException):
    """What :meth:`Stack.crash_after_step` raises: like a Lambda timeout or an out-of-memory kill, nothing in
    the runtime handles it, so the attempt ends without recording anything more; its run keeps its lease
    and the invocation's messages go back to the queue."""


@dataclass(frozen=True)
class Response:
    """An HTTP API answer: status and decoded JSON body."""

    status: int
    body: Any


@dataclass
class _Fault:
    key: str
    times: int
    run_id: str | None
    make_error: Callable[[int], BaseException]


class _Faults:
    """The step hooks (:func:`polos.runtime.steps.set_step_hooks`): counts calls per run and key, raises."""

    def __init__(self) -> None:
        self._before: list[_Fault] = []
        self._after: list[_Fault] = []
        self._counts: dict[tuple[int, str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, when: str, fault: _Fault) -> None:
        with self._lock:
            (self._before if when == "before" else self._after).append(fault)

    def clear(self) -> None:
        with self._lock:
            self._before.clear()
            self._after.clear()
            self._counts.clear()

    def _check(self, faults: list[_Fault], run_id: str, key: str) -> None:
        with self._lock:
            for fault in faults:
                if fault.key != key or fault.run_id not in (None, run_id):
                    continue
                counter = (id(fault), run_id, key)
                count = self._counts[counter] = self._counts.get(counter, 0) + 1
                if count <= fault.times:
                    raise fault.make_error(count)

    def before_call(self, run_id: str, key: str, call: int) -> None:
        self._check(self._before, run_id, key)

    def after_journal(self, run_id: str, key: str) -> None:
        self._check(self._after, run_id, key)


def _off_the_event_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` here, or on a helper thread when this thread runs an event loop (async tests): the
    handlers run their own loop, like Lambda's runtime."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


class Stack:
    """An app on moto: its API handler (it checks the key), queues and worker. See :func:`local_stack`."""

    def __init__(self, local: LocalStack, api_key: str, skip_batch_windows: bool) -> None:
        self._local = local
        self.api_key = api_key
        self.skip_batch_windows = skip_batch_windows
        self._faults = _Faults()
        set_step_hooks(self._faults)

    @property
    def app(self) -> App:
        return self._local.app

    @property
    def faults_seed(self) -> int:
        """The seed of the AWS faults' randomness (``aws_faults``): the same seed replays the same faults."""
        return self._local.options.aws_faults.seed

    def fault_counts(self) -> dict[str, int]:
        """The AWS faults injected so far, by fault (``{"throttle": 3, "duplicates": 1}``)."""
        return self._local.faults.counts()

    # --- the HTTP API -----------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        """One HTTP API request through the API handler (``Authorization`` added)."""
        from infra.local.apigw import HttpRequest

        sent = {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}
        sent.update({name.lower(): value for name, value in (headers or {}).items()})
        raw = b"" if body is None else json.dumps(body).encode()
        request = HttpRequest(method.upper(), path, list(sent.items()), raw)
        answer = _off_the_event_loop(lambda: self._local.gateway.handle(request))
        return Response(answer.status, answer.json())

    def _ok(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        answer = self.request(method, path, body, headers)
        if answer.status >= 400:
            problem = answer.body if isinstance(answer.body, dict) else {}
            raise PolosAPIError(
                answer.status,
                str(problem.get("error_type", "http_error")),
                str(problem.get("error", problem.get("message", answer.body))),
            )
        return answer.body

    def publish(
        self, topic: str, events: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/v1/events/publish`` (events: ``{"data": {...}, "event_type": ..., "id": ...}``)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer: dict[str, Any] = self._ok(
            "POST", "/api/v1/events/publish", {"topic": topic, "events": events}, headers
        )
        return answer

    def invoke(
        self,
        workflow: str | Workflow,
        payload: Any = None,
        idempotency_key: str | None = None,
        *,
        run_timeout_seconds: int | None = None,
        initial_state: dict[str, Any] | None = None,
    ) -> str:
        """Start a run of a workflow (its id or the workflow itself) like ``workflow.invoke``; the run id."""
        from pydantic import BaseModel

        workflow_id = workflow if isinstance(workflow, str) else workflow.id
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        path = f"/api/v1/workflows/{quote(workflow_id, safe='')}/run"
        body: dict[str, Any] = {"payload": payload}
        options = {"run_timeout_seconds": run_timeout_seconds, "initial_state": initial_state}
        body.update({name: value for name, value in options.items() if value is not None})
        run_id: str = self._ok("POST", path, body, headers)["run_id"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        """``GET /api/v1/runs/{run_id}``: the run with its steps."""
        answer: dict[str, Any] = self._ok("GET", f"/api/v1/runs/{quote(run_id, safe='')}")
        return answer

    def runs(self, workflow_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Every run (with its steps), newest first, optionally of one workflow and/or status."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {"workflow_id": workflow_id, "status": status, "cursor": cursor}
            page = self._ok("GET", "/api/v1/runs?" + urlencode({k: v for k, v in query.items() if v}))
            found += [self.run(run["run_id"]) for run in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    def events(self, topic: str) -> list[dict[str, Any]]:
        """Every stored event of ``topic``, in sequence order."""
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            query = urlencode({"topic": topic, "after_sequence_id": after, "limit": 1000})
            page = self._ok("GET", f"/api/v1/events?{query}")
            found += page["events"]
            if page["next_after_sequence_id"] is None:
                return found
            after = page["next_after_sequence_id"]

    # --- the queues -------------------------------------------------------------------------------------

    def drain(
        self,
        *,
        skip_batch_windows: bool | None = None,
        skip_visibility_timeouts: bool = True,
        timeout: float = 60.0,
    ) -> int:
        """Run the worker on every queue until none has a message left; returns the invocations made.

        ``skip_batch_windows`` (default: the stack's) invokes batch workflows with what is queued instead
        of waiting out ``batch_timeout_seconds``. ``skip_visibility_timeouts`` redelivers failed messages at
        once, as if the visibility timeout (and so every run's lease) had passed; the max receive count and
        the dead-letter queue still apply. ``TimeoutError`` if the queues are still busy after ``timeout`` s.
        """
        from polos.runtime import timers

        from infra.local.mapping import drain

        flush = self.skip_batch_windows if skip_batch_windows is None else skip_batch_windows
        # Wake-ups of timers (the timers function's code), and schedules' firings, whose time has come.
        _off_the_event_loop(lambda: self._local.sweep_timers(timers.sweep))
        _off_the_event_loop(self._local.schedules.tick)

        def on_delivery(delivery: Delivery) -> None:
            if skip_visibility_timeouts and delivery.failed:
                _lapse_leases()

        deliveries = _off_the_event_loop(
            lambda: drain(
                self._local.mappings,
                flush_windows=flush,
                redeliver_failures=skip_visibility_timeouts,
                timeout=timeout,
                on_delivery=on_delivery,
            )
        )
        return len(deliveries)

    def advance(self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        """Skip time: waits (and the queues' delays) see the clock moved forward by this much.

        A run waiting ``hours=2`` resumes on the next :meth:`drain` after ``advance(hours=2)``; nothing
        sleeps. Leases and timestamps keep the real clock.
        """
        from polos.runtime import clock

        total = seconds + 60 * minutes + 3600 * hours + 86400 * days
        clock.advance(total)
        _sqs_clock.shift(total)

    def dead_letters(self, workflow_id: str) -> list[dict[str, Any]]:
        """The messages in a workflow's dead-letter queue (decoded bodies), left in place."""
        sqs = settings.sqs()
        url = self._local.dlq_url(workflow_id)
        seen: dict[str, dict[str, Any]] = {}
        while True:
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            new = {
                m["MessageId"]: json.loads(m["Body"])
                for m in answer.get("Messages", [])
                if m["MessageId"] not in seen
            }
            if not new:
                return list(seen.values())
            seen.update(new)

    # --- failure injection ------------------------------------------------------------------------------

    def fail_step(
        self,
        key: str,
        times: int = 1,
        *,
        run_id: str | None = None,
        error: Callable[[str], Exception] = InjectedFailure,
    ) -> None:
        """Make the function of step ``key`` raise on its first ``times`` calls in each run (or in ``run_id``
        only); calls are counted across attempts, so ``times`` above the step's ``max_retries`` fails the
        attempt and the run is retried. ``error`` builds the exception from a message."""
        self._faults.add(
            "before",
            _Fault(key, times, run_id, lambda n: error(f"injected failure {n} of {times} in step {key!r}")),
        )

    def crash_after_step(self, key: str, times: int = 1, *, run_id: str | None = None) -> None:
        """Crash the attempt right after step ``key`` is journaled, the first ``times`` times in each run:
        :class:`SimulatedCrash` ends the invocation; the next delivery resumes after the journaled step."""
        self._faults.add(
            "after",
            _Fault(key, times, run_id, lambda n: SimulatedCrash(f"simulated crash {n} after step {key!r}")),
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    def close(self) -> None:
        set_step_hooks(None)


def _lapse_leases() -> None:
    """Move every run's lease into the past, as the skipped visibility timeout would have (leases are
    shorter). Draining is single-threaded, so no attempt is running while this happens."""
    from polos.runtime.journal import RUN_SK

    client = settings.dynamodb()
    table = settings.get_settings().runs_table
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "sk = :run AND attribute_exists(lease_until)",
        "ExpressionAttributeValues": {":run": {"S": RUN_SK}},
        "ProjectionExpression": "pk, sk, lease_owner",
    }
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            client.update_item(
                TableName=table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET lease_until = :past",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={
                    ":past": {"N": repr(time.time() - 1)},
                    ":owner": item["lease_owner"],
                },
            )
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class _SqsClock:
    """moto's SQS clock (delays, visibility), moved forward with the waits' clock by ``Stack.advance``."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._patched: list[tuple[Any, str, Any]] = []

    def shift(self, seconds: float) -> None:
        import moto.sqs.models as sqs_models

        if not self._patched:
            for name in ("unix_time", "unix_time_millis"):
                real = getattr(sqs_models, name)
                self._patched.append((sqs_models, name, real))
                scale = 1000.0 if name.endswith("millis") else 1.0
                setattr(sqs_models, name, self._shifted(real, scale))
        self._offset += seconds

    def _shifted(self, real: Callable[..., float], scale: float) -> Callable[..., float]:
        return lambda *args: real(*args) + self._offset * scale

    def reset(self) -> None:
        for module, name, real in self._patched:
            setattr(module, name, real)
        self._patched.clear()
        self._offset = 0.0


_sqs_clock = _SqsClock()


@contextmanager
def local_stack(
    app: str | App,
    *,
    skip_batch_windows: bool = True,
    visibility_timeout: int = 30,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    api_key: str | None = None,
    aws_faults: str | None = None,
    faults_seed: int | None = None,
) -> Iterator[Stack]:
    """The app's stack on moto's in-process AWS mock, for the duration of the ``with`` block.

    ``app`` is an :class:`~polos.app.App`, or what ``polos dev --app`` takes (a dotted module or a ``.py``
    path). The environment (fake AWS credentials, table and queue names) is restored afterwards.
    ``aws_faults`` takes what ``polos dev --aws-faults`` takes (default: ``POLOS_AWS_FAULTS``, else none),
    ``faults_seed`` its seed (default: ``POLOS_FAULTS_SEED``, else a random one: ``stack.faults_seed``);
    with ``pollers``, moto serves from a threaded server in this process (its in-process mock is not
    thread-safe).
    """
    from polos.app import App
    from polos.runtime import worker

    from infra.local.aws import apply_environment, fake_credentials, install_speed_patches
    from infra.local.faults.config import AwsFaults
    from infra.local.stack import LocalStack, StackOptions, resolve_app

    install_speed_patches()

    faults = AwsFaults.resolve(aws_faults, faults_seed)
    options = StackOptions(
        visibility_timeout=visibility_timeout, max_attempts=max_attempts, aws_faults=faults
    )
    previous = apply_environment(fake_credentials(None))
    state_dir = Path(tempfile.mkdtemp(prefix="polos-test-"))
    try:
        with contextlib.ExitStack() as cleanup:
            endpoint = cleanup.enter_context(_moto(threaded=faults.pollers is not None))
            apply_environment({"AWS_ENDPOINT_URL": endpoint})  # restored with the rest (`previous`)
            loaded = app if isinstance(app, App) else resolve_app(app)[0]
            local = LocalStack.create(
                loaded,
                state_dir=state_dir,
                endpoint_url=endpoint,
                options=options,
                worker=lambda event: worker.handle(event, loaded),
                prefix=f"pt{secrets.token_hex(4)}-",  # unique, should the test run inside an outer mock
            )
            cleanup.callback(local.close)
            if faults.enabled:  # pytest shows it with a failure: POLOS_FAULTS_SEED replays the faults
                print(f"polos.testing: AWS faults {faults.describe()} (seed {faults.seed})")
            stack = Stack(local, local.create_api_key(api_key, name="polos.testing"), skip_batch_windows)
            cleanup.callback(stack.close)
            yield stack
    finally:
        from polos.runtime import clock

        clock.reset()
        _sqs_clock.reset()
        apply_environment(previous)
        settings.reset()
        shutil.rmtree(state_dir, ignore_errors=True)


@contextmanager
def _moto(*, threaded: bool) -> Iterator[str | None]:
    """moto's in-process mock (endpoint ``None``), or with ``threaded`` its server on a free loopback
    port of this process (the endpoint), emptied and stopped afterwards."""
    if not threaded:
        from moto import mock_aws

        from infra.local.aws import one_request_at_a_time

        with mock_aws(), one_request_at_a_time():
            yield None
        return
    from moto.moto_api._internal.models import moto_api_backend

    from infra.local.aws import serve

    server = serve("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        moto_api_backend.reset()  # the server's backends are this process's: start the next stack empty

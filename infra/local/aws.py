"""AWS for the local stack: an embedded moto server on a free loopback port, and the environment to use it."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess  # nosec B404: starts moto's server process with this interpreter
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIAL = "testing"  # moto accepts any access key and secret
# Variables that would point boto3 elsewhere or at a real profile; the local stack clears them.
_FOREIGN_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SQS",
)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def fake_credentials(endpoint_url: str | None) -> dict[str, str | None]:
    """Environment for boto3 to use moto (``None`` = unset): fake credentials, one region, the endpoint."""
    env: dict[str, str | None] = dict.fromkeys(_FOREIGN_AWS_VARIABLES)
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_CREDENTIAL,
        AWS_SECRET_ACCESS_KEY=FAKE_CREDENTIAL,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint_url,
    )
    return env


def apply_environment(env: dict[str, str | None]) -> dict[str, str | None]:
    """Set (or unset, for ``None``) variables in ``os.environ``; returns their previous values."""
    previous = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous


@contextmanager
def one_request_at_a_time() -> Iterator[None]:
    """moto's in-process mock answers one AWS request at a time while the block runs.

    AWS applies each request atomically; in-process moto mutates plain dicts in several Python steps, so two
    threads (the worker's concurrent runs, the mapping emulator) can interleave inside it and fail with
    errors AWS never gives ("dictionary changed size during iteration", a condition passed twice).
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__
    lock = threading.RLock()

    def answer(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    BotocoreStubber.__call__ = answer  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class _AtomicDynamoDB:
    """Serialises DynamoDB requests. moto's DynamoDB checks a condition and writes in two Python steps,
    so two threads can both pass one condition; DynamoDB itself makes every single-item write atomic.
    SQS requests pass straight through (a long poll must not hold up other calls)."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


def _dispatcher(create_app: Callable[..., Any]) -> WsgiApp:
    """moto's ``DomainDispatcherApplication`` remembering which backend serves which host.

    moto works the backend out again on every request: it lists its package directory (``os.listdir``) and
    tries every backend's URL patterns, ~2 ms per request. Both are fixed for the life of the process, so the
    answer for a host never changes.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    class Dispatcher(DomainDispatcherApplication):
        @functools.lru_cache(maxsize=256)  # noqa: B019 (one per server, lives as long as it)
        def get_backend_for_host(self, host: str | None) -> Any:
            return super().get_backend_for_host(host)

    dispatcher: WsgiApp = Dispatcher(create_app)
    return dispatcher


def install_speed_patches() -> None:
    """moto's answers, faster (each patch is proven equal to moto by ``make moto-parity``); idempotent.
    Installed by the moto server of ``polos dev`` and by the in-process stacks (``polos.testing``, bench)."""
    from infra.local import (
        moto_conditions,
        moto_dispatch,
        moto_expressions,
        moto_query,
        moto_serialize,
        moto_sqs,
        moto_traversal,
    )

    moto_query.install()  # moto's Query reads the whole table; the stack's must not slow down as it grows
    moto_expressions.install()  # nor parse and count the same update expressions on every UpdateItem
    moto_sqs.install()  # nor a receive recount the whole queue for every message it hands out
    moto_dispatch.install()  # nor every request list every member of its response class
    moto_conditions.install()  # nor every condition lex its text again
    moto_traversal.install()  # nor every validation pass ask abstract classes at every node
    moto_serialize.install()  # nor every answer work out its members' aliases again


def serve(host: str, port: int = 0) -> Any:
    """moto in server mode with the local stack's patches, threaded, serving on a thread of this process;
    returns the server (``server_port`` is the port, ``shutdown()`` stops it)."""
    # moto.server's own ThreadedMotoServer takes no WSGI middleware, so build the same server here.
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    install_speed_patches()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per AWS call
    app = _AtomicDynamoDB(_dispatcher(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="moto-server", daemon=True
    )
    thread.start()
    return server


class MotoServer:
    """moto in server mode (:func:`serve`) in a process of its own, on ``host`` and a free port.

    Its own process, so its own interpreter lock: the stack (API, workers, mappings, boto3) and moto each
    get a core instead of taking turns on one. It starts empty, and it ends when :meth:`stop` closes its
    standard input, or when this process dies (the pipe closes with it). ``start()`` returns the endpoint.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def endpoint_url(self) -> str:
        if self._process is None:
            raise RuntimeError("the moto server is not started")
        return f"http://{self._host}:{self._port}"

    def start(self) -> str:
        root = str(Path(__file__).resolve().parents[2])  # where `infra` is importable from
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, path]) if path else root}
        self._process = subprocess.Popen(  # nosec B603: this interpreter, a fixed module, our host argument
            [sys.executable, "-m", "infra.local.moto_process", self._host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        stdout = self._process.stdout
        line = stdout.readline().strip() if stdout is not None else b""  # the port, once it serves
        if not line.isdigit():
            self.stop()
            raise RuntimeError(
                f"the moto server process did not start (it said {line!r}; see its errors above)"
            )
        self._port = int(line)
        return self.endpoint_url

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the server process's signal to end
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

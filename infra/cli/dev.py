"""``polos dev``: the app's HTTP API, queues and workers on this machine, on an embedded moto server."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS

from infra.cli import aws_faults
from infra.local.devlog import RequestLine, route_logs
from infra.local.devserver import DevServer
from infra.local.devstate import state_path
from infra.local.faults.config import FaultsError
from infra.local.metering import ledger_path
from infra.local.stack import DEFAULT_VISIBILITY_TIMEOUT, StackError, StackOptions

LOG_FILE = Path(tempfile.gettempdir()) / "polos-dev.log"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the app locally (HTTP API, queues, workers) with no Docker and no AWS account",
        description="Serve the HTTP API of the app on HOST:PORT, with its tables and queues in an embedded "
        "moto server and every event source mapping emulated around the real worker. Starts empty. "
        f"While it runs, it records its AWS endpoint in {state_path()} for `polos keys ... --dev`.",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE_OR_FILE",
        help="a dotted module importable from the current "
        "directory, or a .py file, holding the workflows (default: the example app)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=3000, help="port to listen on (default: 3000; 0 = any free)"
    )
    parser.add_argument(
        "--api-key", metavar="KEY", help="use this API key (pk_<16 hex>_<64 hex>) instead of a new one"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        metavar="S",
        help=f"seconds before a failed delivery comes back (default: {DEFAULT_VISIBILITY_TIMEOUT})",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="executions of a workflow's code that may fail in a row for one message before the run is "
        f"failed and dead-lettered; @workflow(max_attempts=N) wins (default: {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_argument("--max-receive-count", type=int, help=argparse.SUPPRESS, dest="max_receive_count")
    aws_faults.add_arguments(parser)
    parser.set_defaults(handler=run)


def curl_line(url: str, api_key: str) -> str:
    body = '{"topic": "user/signup", "events": [{"data": {"user_id": "u1", "email": "u1@example.com"}}]}'
    return (
        f"curl -s -X POST {url}/api/v1/events/publish -H {shlex.quote('Authorization: Bearer ' + api_key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def run(args: argparse.Namespace) -> int:
    if args.max_receive_count is not None:
        print(
            "polos dev: --max-receive-count is gone; use --max-attempts N (the executions of a workflow's "
            "code that may fail in a row; the queue's receive count is sized behind it)",
            file=sys.stderr,
        )
        return 2
    try:
        options = StackOptions(
            visibility_timeout=args.visibility_timeout,
            max_attempts=args.max_attempts,
            aws_faults=aws_faults.faults_of(args),
        )
    except (StackError, FaultsError) as exc:
        print(f"polos dev: {exc}", file=sys.stderr)
        return 2
    server = DevServer(
        app_target=args.app,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        options=options,
        request_log=RequestLine(sys.stdout),
        before_serving=lambda: route_logs(LOG_FILE, faults=sys.stdout),
        state_file=state_path(),
        ledger_file=ledger_path(),
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            stack = server.start()
        except StackError as exc:
            print(f"polos dev: {exc}", file=sys.stderr)
            return 2
        print(
            f"Polos dev: app {stack.app.name!r} ({len(stack.app)} workflows), "
            f"started in {server.startup_seconds:.1f} s\n"
            f"  API URL   {server.url}\n"
            f"  API key   {server.api_key}\n"
            f"  Dashboard {server.url}/ui (asks for the API key)\n"
            f"  Logs      {LOG_FILE} (the functions' JSON logs)\n"
            f"  AWS       {server.aws_endpoint_url} (the embedded moto server, recorded in {state_path()})\n"
            "  Keys      polos keys create --name NAME --dev (also list --dev, revoke ID --dev)\n"
            "  Capacity  polos capacity (where your topics, workflows and keys would throttle on AWS)\n"
            f"  Try it:\n    {curl_line(server.url, server.api_key)}\n"
            f"  export POLOS_API_URL={server.url} POLOS_API_KEY={server.api_key}\n"
            + (aws_faults.banner(options.aws_faults) if options.aws_faults.enabled else "")
            + "Ctrl-C stops.",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        print("Stopping…", flush=True)
        injected = stack.faults
        clean = server.stop()
        if options.aws_faults.enabled:
            print(aws_faults.counts_line(injected), flush=True)
        print("Stopped." if clean else "Stopped (some work was still running and was abandoned).", flush=True)
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

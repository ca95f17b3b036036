"""``polos demo``: start the local stack, run every example of the user documentation, show the runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from polos import PolosClient

from infra.cli import aws_faults
from infra.local.demo import Demo, table
from infra.local.devlog import route_logs
from infra.local.devserver import DevServer
from infra.local.faults.config import FaultsError
from infra.local.stack import StackError, StackOptions

LOG_FILE = Path(tempfile.gettempdir()) / "polos-demo.log"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the documentation's examples end to end on the local stack and show what each run did",
    )
    aws_faults.add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        options = StackOptions(aws_faults=aws_faults.faults_of(args))
    except FaultsError as exc:
        print(f"polos demo: {exc}", file=sys.stderr)
        return 2
    server = DevServer(port=0, options=options, before_serving=lambda: route_logs(LOG_FILE, console=None))
    try:
        stack = server.start()
    except StackError as exc:
        print(f"polos demo: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"Local stack of the example app at {server.url} (started in {server.startup_seconds:.1f} s)")
        print(aws_faults.banner(options.aws_faults) if options.aws_faults.enabled else "")
        client = PolosClient(server.url, server.api_key)
        demo = Demo(client, stack.app, server.api_key, sys.stdout, pollers=options.aws_faults.poller_count)
        try:
            asyncio.run(demo.run_all())
        except Exception as exc:
            print(f"\npolos demo: a scenario failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print("\n" + table(demo.expected) + "\n")
        for note in demo.notes:
            print(note)
        if options.aws_faults.enabled:
            print(aws_faults.counts_line(stack.faults))
        failed = [e for e in demo.expected if not e.ok]
        elapsed = time.perf_counter() - started
        if failed:
            print(
                f"{len(failed)} of {len(demo.expected)} runs did not complete as expected "
                f"(the functions' logs: {LOG_FILE})."
            )
            return 1
        print(f"All {len(demo.expected)} runs completed as expected in {elapsed:.1f} s.")
        return 0
    finally:
        server.stop()

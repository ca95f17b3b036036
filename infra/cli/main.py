"""``polos``: the entry point. Subcommands are discovered from the modules of ``infra.cli``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import infra.cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polos", description="Event-triggered durable workflows on AWS.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(infra.cli.__path__), key=lambda info: info.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"infra.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``polos`` command; its handler returns the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

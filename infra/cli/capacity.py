"""``polos capacity``: where the app's own topics, workflows and API keys would throttle on AWS, from the
requests the last ``polos dev`` session metered (:mod:`infra.local.metering`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.local.metering import ledger_path
from infra.metering import capacity

DESCRIPTION = f"""\
For each topic, workflow and API key the last `polos dev` session used: the read and write
units its busiest DynamoDB partition key took per event, run or request, and the rate at which
that key reaches {capacity.HEADROOM:.0%} of AWS's per-partition limits ({capacity.WRITE_LIMIT:,} write and
{capacity.READ_LIMIT:,} read units a second). Drive the app with your own tests or demo first;
the figures come from the requests that actually ran (written to {ledger_path()})."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "capacity",
        help="per topic, workflow and API key: the rate at which it would throttle on AWS",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--file", type=Path, default=None, help=f"the ledger to read (default: {ledger_path()})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.file or ledger_path()
    try:
        ledger = capacity.Ledger.from_json(path.read_text())
    except FileNotFoundError:
        print(
            f"polos capacity: no polos dev session recorded in {path}: run `polos dev` first", file=sys.stderr
        )
        return 2
    except (OSError, ValueError, TypeError) as exc:
        print(f"polos capacity: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    loads = ledger.loads()
    if not loads:
        print("No shared partition key was used yet: publish events or run workflows on `polos dev` first.")
        return 0
    print("\n".join(capacity.text_table(loads)))
    return 0

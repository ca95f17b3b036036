"""``--aws-faults LIST`` and ``--faults-seed N``, shared by ``polos dev`` and ``polos demo``."""

from __future__ import annotations

import argparse

from infra.local.faults.config import ENV_AWS_FAULTS, ENV_FAULTS_SEED, FAULT_NAMES, AwsFaults
from infra.local.faults.injector import Injector


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--aws-faults",
        metavar="LIST",
        help="turn on what AWS does and moto does not: all, or a comma list of "
        f"{', '.join(FAULT_NAMES)} with optional rates, e.g. shuffle,duplicates=0.05,pollers=4,"
        f"throttle=0.1,iam,limits (default: ${ENV_AWS_FAULTS}, else none)",
    )
    parser.add_argument(
        "--faults-seed",
        metavar="N",
        help=f"seed of the faults' randomness: the same seed replays the same faults (default: "
        f"${ENV_FAULTS_SEED}, else a random one, printed)",
    )


def faults_of(args: argparse.Namespace) -> AwsFaults:
    """The faults asked for (``FaultsError`` names a bad token)."""
    return AwsFaults.resolve(args.aws_faults, args.faults_seed)


def banner(faults: AwsFaults) -> str:
    """The start-up line naming the faults on and their seed."""
    replay = f"seed {faults.seed}: --faults-seed {faults.seed} replays them"
    return f"  Faults    {faults.describe()} ({replay})\n"


def counts_line(injector: Injector) -> str:
    return f"AWS faults injected: {injector.summary()}."

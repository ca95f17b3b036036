"""``polos keys create|list|revoke``: API keys in the keys table of the configured AWS endpoint.

The table is ``POLOS_KEYS_TABLE``; boto3 picks the endpoint and credentials. With ``--dev``, the keys of
the running ``polos dev`` instead: its embedded moto server, found in the file it records itself in
(:mod:`infra.local.devstate`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from polos.api.keys import ADMIN, SCOPES, KeyStore
from polos.aws import settings
from polos.errors import InfrastructureThrottled

from infra.local.aws import apply_environment
from infra.local.devstate import DevState, NoDevServer, read, state_path

DESCRIPTION = f"""\
API keys of the HTTP API (only the SHA-256 of a key's secret is stored; a revoked key
is refused from the next request).

By default: the keys table named by POLOS_KEYS_TABLE, at the AWS account and endpoint
boto3 is configured for (a deployed stack: its ApiKeysTableName output).
With --dev: the keys of the running `polos dev`, which records its embedded AWS
endpoint in {state_path()} while it runs."""


EPILOG = """\
examples:
  polos keys create --name ci --dev     a key for the running polos dev
  polos keys create --name ingest --scope publish   a key that can only publish
  polos keys list --dev
  polos keys revoke ID --dev            refused from the next request
  POLOS_KEYS_TABLE=<table> polos keys list   a deployed stack's keys"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--dev",
        action="store_true",
        help=f"the keys of the running `polos dev` (recorded in {state_path()}) instead of POLOS_KEYS_TABLE",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[target], help="create a key and print it (shown only this once)"
    )
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default=ADMIN,
        help="publish: publishing events only; read: every GET; admin (default): everything",
    )
    create.set_defaults(handler=_guarded(create_key))
    actions.add_parser(
        "list", parents=[target], help="list keys (ids, names, status; never secrets)"
    ).set_defaults(handler=_guarded(list_keys))
    revoke = actions.add_parser("revoke", parents=[target], help="revoke a key by id")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(handler=_guarded(revoke_key))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Point boto3 at ``polos dev`` for ``--dev``; report AWS errors as one line naming the table, with
    exit status 1."""

    def run(args: argparse.Namespace) -> int:
        dev: DevState | None = None
        if args.dev:
            try:
                dev = read(state_path())
            except NoDevServer as exc:
                print(f"polos keys: {exc}", file=sys.stderr)
                return 2
            previous = apply_environment(dev.environment)
            settings.reset()
        try:
            return command(args)
        except (BotoCoreError, ClientError, InfrastructureThrottled) as exc:  # the last: our clients' retries
            table = settings.get_settings().keys_table
            where = (
                f"of polos dev (pid {dev.pid}, AWS endpoint {dev.aws_endpoint_url}; is it still running?)"
                if dev is not None
                else f"({settings.ENV_KEYS_TABLE})"
            )
            print(f"polos keys: cannot use the keys table {table!r} {where}: {exc}", file=sys.stderr)
            return 1
        finally:
            if dev is not None:
                apply_environment(previous)
                settings.reset()

    return run


def create_key(args: argparse.Namespace) -> int:
    try:
        record, key = KeyStore().create(args.name, scope=args.scope)
    except ValueError as exc:
        print(f"polos keys create: {exc}", file=sys.stderr)
        return 2
    print(
        f"Created API key {record.key_id} ({record.name}) with scope {record.scope}. "
        "It is shown only now; store it safely:"
    )
    print(key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    keys = KeyStore().list()
    if not keys:
        print("No API keys. Create one with: polos keys create --name NAME")
        return 0
    print(f"{'ID':<16}  {'STATUS':<8}  {'SCOPE':<7}  {'CREATED':<27}  NAME")
    for key in keys:
        status = "active" if key.active else "revoked"
        print(f"{key.key_id:<16}  {status:<8}  {key.scope:<7}  {key.created_at:<27}  {key.name}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    try:
        record = KeyStore().revoke(args.key_id)
    except KeyError:
        print(f"polos keys revoke: no API key with id {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"Revoked API key {record.key_id} ({record.name}) at {record.revoked_at}.")
    return 0

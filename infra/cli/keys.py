"""``polos keys create|list|revoke``: API keys in the keys table of the configured AWS endpoint.

The table is ``POLOS_KEYS_TABLE``; boto3 picks the endpoint (``AWS_ENDPOINT_URL`` for a local stack).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from polos.api.keys import KeyStore
from polos.aws import settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.set_defaults(handler=_guarded(create_key))
    actions.add_parser("list", help="list keys (ids, names, status; never secrets)").set_defaults(
        handler=_guarded(list_keys)
    )
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(handler=_guarded(revoke_key))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report AWS errors as one line naming the table, with exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (BotoCoreError, ClientError) as exc:
            table = settings.get_settings().keys_table
            print(
                f"polos keys: cannot use the keys table {table!r} ({settings.ENV_KEYS_TABLE}): {exc}",
                file=sys.stderr,
            )
            return 1

    return run


def create_key(args: argparse.Namespace) -> int:
    try:
        record, key = KeyStore().create(args.name)
    except ValueError as exc:
        print(f"polos keys create: {exc}", file=sys.stderr)
        return 2
    print(f"Created API key {record.key_id} ({record.name}). It is shown only now; store it safely:")
    print(key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    keys = KeyStore().list()
    if not keys:
        print("No API keys. Create one with: polos keys create --name NAME")
        return 0
    print(f"{'ID':<16}  {'STATUS':<8}  {'CREATED':<27}  NAME")
    for key in keys:
        status = "active" if key.active else "revoked"
        print(f"{key.key_id:<16}  {status:<8}  {key.created_at:<27}  {key.name}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    try:
        record = KeyStore().revoke(args.key_id)
    except KeyError:
        print(f"polos keys revoke: no API key with id {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"Revoked API key {record.key_id} ({record.name}) at {record.revoked_at}.")
    return 0

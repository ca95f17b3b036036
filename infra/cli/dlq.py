"""``polos dlq list WORKFLOW`` and ``polos dlq redrive WORKFLOW``: a workflow's dead letters (HTTP API).

The API is found through ``POLOS_API_URL`` / ``POLOS_API_KEY`` (``polos dev`` prints both).
"""

from __future__ import annotations

import argparse

from polos.client import PolosClient

from infra.cli.runs import _call, _client, _limit, table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = subparsers.add_parser("dlq", help="list or redrive a workflow's dead-lettered messages")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the messages in the workflow's dead-letter queue")
    listing.add_argument("workflow_id", metavar="WORKFLOW")
    listing.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="at most N messages (1-100, default 50)"
    )
    listing.set_defaults(handler=list_command)
    redrive = actions.add_parser(
        "redrive", help="move them back to the workflow's queue; their runs run again"
    )
    redrive.add_argument("workflow_id", metavar="WORKFLOW")
    redrive.set_defaults(handler=redrive_command)


def list_command(args: argparse.Namespace) -> int:
    client = _client("dlq list")
    if client is None:
        return 2
    page = _call("dlq list", client.dead_letters(args.workflow_id, limit=args.limit))
    if isinstance(page, int):
        return page
    rows = [
        [
            letter["message_id"],
            letter.get("kind", "?"),
            letter.get("run_id") or "",
            (letter.get("event") or {}).get("id", "") or letter.get("error", ""),
            letter.get("sent_at") or "",
        ]
        for letter in page["dead_letters"]
    ]
    if not rows:
        print(f"no dead letters for {args.workflow_id}")
        return 0
    print(table(["MESSAGE", "KIND", "RUN", "EVENT", "SENT"], rows))
    if page["approximate_count"] > len(rows):
        print(f"(about {page['approximate_count']} in all; raise --limit to see more)")
    return 0


async def _redrive_all(client: PolosClient, workflow_id: str) -> dict[str, int]:
    """Redrive until a call moves nothing (one call moves up to 1000 messages)."""
    total = 0
    while moved := await client.redrive(workflow_id):
        total += moved
    return {"moved": total}


def redrive_command(args: argparse.Namespace) -> int:
    client = _client("dlq redrive")
    if client is None:
        return 2
    answer = _call("dlq redrive", _redrive_all(client, args.workflow_id))
    if isinstance(answer, int):
        return answer
    print(f"moved {answer['moved']} message(s) of {args.workflow_id} back to its queue; their runs run again")
    return 0

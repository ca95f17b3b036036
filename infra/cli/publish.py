"""``polos publish TOPIC DATA_JSON``: one event over the HTTP API (``POLOS_API_URL``, ``POLOS_API_KEY``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
from typing import Any

from polos.client import ENV_API_KEY, ENV_API_URL, PolosClient
from polos.errors import PolosAPIError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("publish", help="publish one event to a topic over the HTTP API")
    parser.add_argument("topic", metavar="TOPIC", help="e.g. user/signup")
    parser.add_argument(
        "data", metavar="DATA_JSON", help='the event data, a JSON object, e.g. \'{"user_id": "u1"}\''
    )
    parser.add_argument("--event-type", help="the event's type")
    parser.add_argument("--idempotency-key", help="retrying with the same key publishes once")
    parser.set_defaults(handler=run)


def _fail(message: str, status: int = 1) -> int:
    print(f"polos publish: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    try:
        data: Any = json.loads(args.data)
    except json.JSONDecodeError as exc:
        return _fail(f"DATA_JSON is not valid JSON: {exc}", 2)
    if not isinstance(data, dict):
        return _fail(f"DATA_JSON must be a JSON object, got {type(data).__name__}", 2)
    try:
        client = PolosClient()
    except ValueError as exc:
        return _fail(f"{exc} (set {ENV_API_URL} and {ENV_API_KEY}; `polos dev` prints both)", 2)
    event: dict[str, Any] = {"data": data}
    if args.event_type is not None:
        event["event_type"] = args.event_type
    try:
        answer = asyncio.run(client.publish(args.topic, [event], idempotency_key=args.idempotency_key))
    except PolosAPIError as exc:
        return _fail(str(exc))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(f"cannot reach the API at {client.base_url}: {reason}")
    print(json.dumps(answer, indent=2))
    return 0

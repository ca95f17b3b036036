"""``polos runs`` and ``polos run RUN_ID``: runs as readable tables, over the HTTP API.

The API is found through ``POLOS_API_URL`` / ``POLOS_API_KEY`` (``polos dev`` prints both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, get_args

from polos.client import ENV_API_KEY, ENV_API_URL, PolosClient
from polos.errors import PolosAPIError
from polos.runtime.status import RunStatus

T = TypeVar("T")

STATUSES: tuple[str, ...] = get_args(RunStatus)  # the runs API's statuses (``queued``, ``skipped``, ...)
MAX_CELL = 60


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = subparsers.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--workflow", metavar="W", help="only this workflow's runs")
    runs.add_argument("--status", choices=STATUSES, help="only runs with this status")
    runs.add_argument(
        "--limit", type=_limit, default=20, metavar="N", help="at most N runs (1-100, default 20)"
    )
    runs.set_defaults(handler=list_command)
    actions = runs.add_subparsers(dest="action", metavar="{cancel,resume,rerun}")
    cancel = actions.add_parser(
        "cancel", help="cancel a run, or with --workflow every unfinished run matching the filter"
    )
    cancel.add_argument("run_id", metavar="RUN_ID", nargs="?")
    _bulk_filter(cancel)
    cancel.set_defaults(handler=cancel_command)
    rerun = actions.add_parser(
        "rerun", help="rerun a finished run, or with --workflow every finished run matching the filter"
    )
    rerun.add_argument("run_id", metavar="RUN_ID", nargs="?")
    rerun.add_argument("--from-step", metavar="KEY", help="replay the steps before KEY as journaled")
    rerun.add_argument("--payload", type=_json_value, metavar="JSON", help="a new payload")
    _bulk_filter(rerun)
    rerun.set_defaults(handler=rerun_command)
    resume = actions.add_parser("resume", help="resume a run's suspend step")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument("key", metavar="KEY", help="the suspend step's key")
    resume.add_argument("--data", type=_json_object, default=None, metavar="JSON", help="the step's result")
    resume.set_defaults(handler=resume_command)
    run = subparsers.add_parser("run", help="show one run and its steps")
    run.add_argument("run_id", metavar="RUN_ID")
    run.set_defaults(handler=show_command)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def _bulk_filter(parser: argparse.ArgumentParser) -> None:
    bulk = parser.add_argument_group("bulk (instead of RUN_ID)")
    bulk.add_argument("--workflow", dest="bulk_workflow", metavar="W", help="every matching run of W")
    bulk.add_argument("--status", dest="bulk_status", choices=STATUSES, help="only runs with this status")
    bulk.add_argument("--created-after", metavar="TIME", help="only runs created after TIME (ISO 8601)")
    bulk.add_argument("--created-before", metavar="TIME", help="only runs created before TIME (ISO 8601)")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"is not JSON: {exc}") from None


def _one_or_bulk(name: str, args: argparse.Namespace) -> bool | None:
    """Whether the command acts in bulk (``--workflow``), or ``None`` (after a message) when it names
    neither or both a run and a workflow."""
    if (args.run_id is None) == (args.bulk_workflow is None):
        print(f"polos {name}: give RUN_ID or --workflow W (with its filter), not both", file=sys.stderr)
        return None
    single_only = [vars(args).get(option) for option in ("from_step", "payload")]
    filters = (args.bulk_status, args.created_after, args.created_before)
    if (args.run_id is not None and any(v is not None for v in filters)) or (
        args.bulk_workflow is not None and any(v is not None for v in single_only)
    ):
        print(
            f"polos {name}: --status/--created-* go with --workflow, --from-step/--payload with RUN_ID",
            file=sys.stderr,
        )
        return None
    return args.bulk_workflow is not None


def _bulk(name: str, args: argparse.Namespace, client: PolosClient) -> int:
    act = client.cancel_runs if name == "runs cancel" else client.rerun_runs

    async def counted() -> dict[str, int]:  # a dict: ``_call``'s failure is an int
        matched = await act(
            args.bulk_workflow,
            status=args.bulk_status,
            created_after=args.created_after,
            created_before=args.created_before,
        )
        return {"matched": matched}

    answer = _call(name, counted())
    if isinstance(answer, int):
        return answer
    print(f"matched {answer['matched']}")
    return 0


def rerun_command(args: argparse.Namespace) -> int:
    return _one_or_every(
        "runs rerun",
        args,
        lambda client: client.rerun(args.run_id, from_step=args.from_step, payload=args.payload),
        lambda run: f"{run['run_id']}  rerun of {run['rerun_of']}",
    )


def cancel_command(args: argparse.Namespace) -> int:
    return _one_or_every(
        "runs cancel",
        args,
        lambda client: client.cancel(args.run_id),
        lambda run: f"{run['run_id']}  {run['status']}",
    )


def _one_or_every(
    name: str,
    args: argparse.Namespace,
    one: Callable[[PolosClient], Coroutine[Any, Any, dict[str, Any]]],
    shown: Callable[[dict[str, Any]], str],
) -> int:
    """``polos runs rerun|cancel``: the run ``args.run_id`` (``one``, printed by ``shown``) or, with a
    filter, every matching run (``_bulk``)."""
    bulk = _one_or_bulk(name, args)
    client = None if bulk is None else _client(name)
    if client is None:
        return 2
    if bulk:
        return _bulk(name, args, client)
    run = _call(name, one(client))
    if isinstance(run, int):
        return run
    print(shown(run))
    return 0


def resume_command(args: argparse.Namespace) -> int:
    client = _client("runs resume")
    if client is None:
        return 2
    run = _call("runs resume", client.resume(args.run_id, args.key, args.data))
    if isinstance(run, int):
        return run
    print(f"{run['run_id']}  {run['status']}")
    return 0


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {value}")
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, long cells cut at ``MAX_CELL`` characters."""
    cells = [[_cut(cell) for cell in row] for row in [list(headers), *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _compact(value: Any) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _error(error: dict[str, Any] | None) -> str:
    return "" if not error else f"{error.get('type')}: {error.get('message')}"


def _call(name: str, work: Coroutine[Any, Any, T]) -> T | int:
    """Run an API call; an exit status (after a message on stderr) when it fails."""
    try:
        return asyncio.run(work)
    except PolosAPIError as exc:
        print(f"polos {name}: {exc.error_message} ({exc.status} {exc.error_type})", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"polos {name}: cannot reach the API: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return 1


def _client(name: str) -> PolosClient | None:
    try:
        return PolosClient()
    except ValueError as exc:
        print(
            f"polos {name}: {exc} (set {ENV_API_URL} and {ENV_API_KEY}; `polos dev` prints both)",
            file=sys.stderr,
        )
        return None


def list_command(args: argparse.Namespace) -> int:
    client = _client("runs")
    if client is None:
        return 2
    page = _call("runs", client.list_runs(workflow_id=args.workflow, status=args.status, limit=args.limit))
    if isinstance(page, int):
        return page
    priced = any("cost" in run for run in page["runs"])  # `polos dev` prices each run
    rows = [
        [
            run["run_id"],
            run["workflow_id"],
            run["status"],
            str(run["attempts"]),
            run["trigger"]["type"]
            + (f" ({len(run['trigger']['event_ids'])})" if run["trigger"]["event_ids"] else ""),
            run["created_at"],
            _waiting(run.get("waiting_for")) or _error(run["error"]) or _compact(run["result"]),
            *([_price(run.get("cost"))] if priced else []),
        ]
        for run in page["runs"]
    ]
    if not rows:
        print("no runs")
        return 0
    headers = ["RUN", "WORKFLOW", "STATUS", "ATTEMPTS", "TRIGGER", "CREATED", "RESULT / ERROR"]
    headers += ["COST (list prices)"] if priced else []
    print(table(headers, rows))
    if page.get("next_cursor"):
        print("(more runs follow; raise --limit to see them)")
    return 0


def show_command(args: argparse.Namespace) -> int:
    client = _client("run")
    if client is None:
        return 2
    run = _call("run", client.get_run(args.run_id))
    if isinstance(run, int):
        return run
    trigger = run["trigger"]
    facts = [
        ["run", run["run_id"]],
        ["workflow", run["workflow_id"]],
        ["status", run["status"]],
        ["attempts", str(run["attempts"])],
        [
            "trigger",
            trigger["type"] + (": " + ", ".join(trigger["event_ids"]) if trigger["event_ids"] else ""),
        ],
        ["created", run["created_at"]],
        ["updated", run["updated_at"]],
    ]
    if run.get("cost"):
        facts.append(["cost", _price(run["cost"])])
    if run.get("waiting_for"):
        facts.append(["waiting for", _waiting(run["waiting_for"])])
    if run["error"]:
        facts.append(["error", _error(run["error"])])
    else:
        facts.append(["result", _compact(run["result"])])
    width = max(len(name) for name, _ in facts)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in facts))
    steps = [
        [
            step["key"],
            step["status"],
            str(step["attempts"]),
            step["started_at"],
            step["finished_at"] or "",
            _error(step.get("error"))
            if step["status"] == "failed"
            else _waiting(step.get("waiting_for")) or _compact(step.get("result")),
        ]
        for step in run["steps"]
    ]
    print()
    print(
        table(["STEP", "STATUS", "ATTEMPTS", "STARTED", "FINISHED", "RESULT / ERROR"], steps)
        if steps
        else "no steps"
    )
    return 0


def _price(cost: dict[str, Any] | None) -> str:
    """A run's metered cost: ``$0.0000041 (5 requests: dynamodb $0.0000038, sqs $0.0000004)``."""
    if not cost:
        return ""
    services = ", ".join(f"{name} ${usd:.7f}" for name, usd in sorted(cost["by_service"].items()))
    return f"${cost['usd']:.7f} ({cost['requests']} requests: {services})"


def _waiting(waiting_for: dict[str, Any] | None) -> str:
    """``waits for timer until 2026-12-01T03:00:00.000000Z`` (empty when the run does not wait)."""
    if not waiting_for:
        return ""
    if waiting_for["kind"] == "concurrency":  # a queued run over its queue's limit
        key = f" key {waiting_for['key']}" if waiting_for.get("key") is not None else ""
        return f"waits for a slot of queue {waiting_for['queue']}{key}"
    shown = f"waits for {waiting_for['kind']} (step {waiting_for['step']})"
    if waiting_for.get("until"):
        shown += f" until {waiting_for['until']}"
    return shown

"""``polos template [--app MODULE_OR_FILE] [--check]``: render or check ``template.yaml``, the manifest and
the build Makefiles."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from polos.app import App, load_app
from polos.errors import WorkflowDefinitionError

from infra.model import build_model
from infra.template import (
    MANIFEST_PATH,
    TEMPLATE_PATH,
    TemplateError,
    render_files,
    retained_queues_notice,
    stale_diffs,
    write_files,
)

DEFAULT_APP = "workflows"
FUNCTIONS_DIR = Path(MANIFEST_PATH).parent.name  # the Lambda code package: handlers and the app


def project_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``functions/`` and ``template.yaml``; else this
    checkout's root (the directory above ``infra/``)."""
    for candidate in (start, *start.parents, Path(__file__).resolve().parents[2]):
        if (candidate / FUNCTIONS_DIR).is_dir() and (candidate / TEMPLATE_PATH).is_file():
            return candidate
    raise TemplateError(
        f"no project found: run `polos template` in a directory holding {FUNCTIONS_DIR}/ and {TEMPLATE_PATH}"
    )


def app_module(target: str, app: App, functions: Path) -> str:
    """``POLOS_APP`` of the deployed worker: the app as a module of ``functions/`` (home of all workflows)."""
    root = functions.resolve()
    sources = [Path(inspect.getfile(wf.fn)).resolve() for wf in app]
    if Path(target).is_file():
        sources.append(Path(target).resolve())
    for source in sources:
        if not source.is_relative_to(root):
            raise TemplateError(
                f"app {target!r}: {source} is outside {functions}/, where the deployed worker imports from"
            )
    return (
        ".".join(Path(target).resolve().relative_to(root).with_suffix("").parts)
        if Path(target).is_file()
        else target
    )


def run(args: argparse.Namespace) -> int:
    try:
        root = project_root(Path.cwd())
        functions = root / FUNCTIONS_DIR
        if str(functions) not in sys.path:
            sys.path.insert(0, str(functions))
        app = load_app(args.app)
        if not len(app):
            raise TemplateError(f"app {args.app!r} defines no workflows")
        model = build_model(app)
        files = render_files(model, app_module(args.app, app, functions))
    except (TemplateError, WorkflowDefinitionError) as exc:
        print(f"polos template: {exc}", file=sys.stderr)
        return 2
    names = " and ".join(files)
    notice = retained_queues_notice(root, files)
    if args.check:
        diffs = stale_diffs(root, files)
        if diffs:
            sys.stdout.write("".join(diffs))
            if notice:
                print(f"polos template: note: {notice}", file=sys.stderr)
            print(
                f"polos template: {names} are stale; run `polos template` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{names} are up to date ({len(model.queues)} workflows)")
        return 0
    changed = write_files(root, files)
    print(f"wrote {' and '.join(changed)}" if changed else f"{names} were already up to date", end="")
    print(f" ({len(model.queues)} workflows)")
    if notice:
        print(f"polos template: note: {notice}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "template",
        help="render template.yaml, functions/polos_manifest.json and the build Makefiles from the app",
        description="Render the SAM template, the subscription manifest and the build Makefiles (every "
        "module compiled for the Lambda runtime) from the app's workflows.",
    )
    parser.add_argument(
        "--app",
        default=DEFAULT_APP,
        metavar="MODULE_OR_FILE",
        help=f"the app: a module importable from {FUNCTIONS_DIR}/ or the current directory, or a .py file "
        f"in {FUNCTIONS_DIR}/ (default: {DEFAULT_APP})",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff when a file is stale"
    )
    parser.set_defaults(handler=run)

"""An *app*: the workflows one module (and its submodules) defines, loaded by name or file path."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from polos.definition import Workflow, registry
from polos.errors import WorkflowDefinitionError


class App:
    """The workflows of one app, by id, with the subscriptions of each topic."""

    def __init__(self, name: str, workflows: list[Workflow]) -> None:
        self.name = name
        self._by_id: dict[str, Workflow] = {}
        for wf in workflows:
            other = self._by_id.get(wf.id)
            if other is not None and other is not wf:
                raise WorkflowDefinitionError(
                    f"workflow id {wf.id!r} is defined twice in app {name!r}: in {other.fn.__module__} and "
                    f"{wf.fn.__module__}; ids must be unique in an app"
                )
            self._by_id[wf.id] = wf

    def __iter__(self) -> Iterator[Workflow]:
        return iter(sorted(self._by_id.values(), key=lambda wf: wf.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, workflow_id: str) -> Workflow | None:
        return self._by_id.get(workflow_id)

    def subscribers(self, topic: str) -> list[Workflow]:
        """Workflows triggered by the canonical ``topic``, by id."""
        return [wf for wf in self if wf.topic == topic]


def _import_target(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise WorkflowDefinitionError(f"app file {target!r} does not exist")
        name = f"polos_app_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise WorkflowDefinitionError(f"cannot load app file {target!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise WorkflowDefinitionError(f"app module {target!r} cannot be imported: {exc}") from exc
        raise
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=target + "."):
        importlib.import_module(info.name)
    return module


def load_app(target: str) -> App:
    """Import ``target`` (a dotted module or a ``.py`` path) and return the workflows it defines."""
    module = _import_target(target)
    return App(target, registry.in_package(module.__name__))

"""The subscription manifest: which workflows each topic feeds, without importing workflow code.

``polos template`` writes it (``functions/polos_manifest.json``) from the app; the API function reads it
from its package (``POLOS_MANIFEST_PATH``), so hundreds of workflows cost a file, not an environment blob.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polos.aws import settings

MANIFEST_VERSION = 1
# The options of ``@workflow`` that ``GET /api/v1/workflows`` shows (CONTRACTS: queues, flow control, runs),
# read with ``getattr(workflow, name, None)``: an option this version does not have is simply not shown.
OPTION_NAMES = (
    "queue",
    "concurrency_key",
    "max_concurrency",
    "strict_order",
    "debounce",
    "throttle",
    "rate_limit",
    "run_timeout_seconds",
    "state_schema",
    "max_attempts",
)


@dataclass(frozen=True)
class WorkflowEntry:
    """What the publish side and the runs API need to know of one workflow."""

    id: str
    topic: str | None
    batch: bool
    # It has a ``state_schema`` (an ``initial_state`` is refused for a workflow without one).
    state: bool = False
    schedulable: bool = False  # ``@workflow(schedule=True)``: schedules may be made for it at run time
    batch_size: int = 1
    batch_window_seconds: int | None = None
    schedule: dict[str, Any] | None = field(default=None, hash=False)  # {"cron", "timezone"}
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # of OPTION_NAMES, those set
    # ``@workflow(queue=...)``: the queue's name and limit (``GET /api/v1/queues/{name}``).
    queue: str | None = None
    concurrency_limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry: the keys beyond ``topic`` and ``batch`` only when they are not defaults."""
        body: dict[str, Any] = {"topic": self.topic, "batch": self.batch}
        if self.batch:
            body |= {"batch_size": self.batch_size, "batch_window_seconds": self.batch_window_seconds}
        if self.schedule is not None:
            body["schedule"] = self.schedule
        if self.options:
            body["options"] = self.options
        if self.state:
            body["state"] = True
        if self.schedulable:
            body["schedulable"] = True
        if self.queue is not None:
            body.update(queue=self.queue, concurrency_limit=self.concurrency_limit)
        return body

    @classmethod
    def from_dict(cls, wf_id: str, entry: Mapping[str, Any]) -> WorkflowEntry:
        return cls(
            id=wf_id,
            topic=entry["topic"],
            batch=bool(entry["batch"]),
            batch_size=int(entry.get("batch_size", 1)),
            batch_window_seconds=entry.get("batch_window_seconds"),
            schedule=entry.get("schedule"),
            options=dict(entry.get("options") or {}),
            state=bool(entry.get("state")),
            schedulable=bool(entry.get("schedulable", False)),
            queue=entry.get("queue"),
            concurrency_limit=entry.get("concurrency_limit"),
        )


def plain(value: Any) -> Any:
    """``value`` as JSON data: mappings, sequences, dataclasses and pydantic models by their fields, a class
    (a state schema) by its name, anything else by ``str``."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, type):
        return value.__name__
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    dump = getattr(value, "model_dump", None)
    return plain(dump(mode="json")) if callable(dump) else str(value)


def options_of(workflow: object) -> dict[str, Any]:
    """The :data:`OPTION_NAMES` ``workflow`` has and sets (not ``None``), as JSON data."""
    found = {name: getattr(workflow, name, None) for name in OPTION_NAMES}
    return {name: plain(value) for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class Manifest:
    """Workflows by id and subscribers by canonical topic."""

    workflows: dict[str, WorkflowEntry]

    def subscribers(self, topic: str) -> list[str]:
        """Ids of the workflows that ``topic`` (canonical) triggers, sorted."""
        return sorted(wf.id for wf in self.workflows.values() if wf.topic == topic)

    def to_json(self) -> str:
        body = {
            "version": MANIFEST_VERSION,
            "workflows": {wf_id: wf.to_dict() for wf_id, wf in sorted(self.workflows.items())},
        }
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw: dict[str, Any] = json.loads(text)
        if raw.get("version") != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {raw.get('version')!r}")
        return cls(
            workflows={
                wf_id: WorkflowEntry.from_dict(wf_id, entry) for wf_id, entry in raw["workflows"].items()
            }
        )


@functools.cache
def _load(path: str) -> Manifest:
    return Manifest.from_json(Path(path).read_text())


def current() -> Manifest:
    """The manifest at ``POLOS_MANIFEST_PATH`` (read once per process and path)."""
    return _load(settings.get_settings().manifest_path)

"""The subscription manifest: which workflows each topic feeds, without importing workflow code.

``polos template`` writes it (``functions/polos_manifest.json``) from the app; the API function reads it
from its package (``POLOS_MANIFEST_PATH``), so hundreds of workflows cost a file, not an environment blob.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polos.aws import settings

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class WorkflowEntry:
    """What the publish side and the runs API need to know of one workflow."""

    id: str
    topic: str | None
    batch: bool
    # ``@workflow(queue=...)``: the queue's name and limit (``GET /api/v1/queues/{name}``).
    queue: str | None = None
    concurrency_limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"topic": self.topic, "batch": self.batch}
        if self.queue is not None:  # absent otherwise: manifests of apps without queues are unchanged
            body.update(queue=self.queue, concurrency_limit=self.concurrency_limit)
        return body


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
                wf_id: WorkflowEntry(
                    id=wf_id,
                    topic=entry["topic"],
                    batch=bool(entry["batch"]),
                    queue=entry.get("queue"),
                    concurrency_limit=entry.get("concurrency_limit"),
                )
                for wf_id, entry in raw["workflows"].items()
            }
        )


@functools.cache
def _load(path: str) -> Manifest:
    return Manifest.from_json(Path(path).read_text())


def current() -> Manifest:
    """The manifest at ``POLOS_MANIFEST_PATH`` (read once per process and path)."""
    return _load(settings.get_settings().manifest_path)

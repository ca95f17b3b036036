"""The one model of the infrastructure, read by the template renderer and by the local stack."""

from __future__ import annotations

from dataclasses import dataclass

from polos import settings
from polos.app import App
from polos.manifest import Manifest, WorkflowEntry

TTL_ATTRIBUTE = "expires_at"
SINGLE_EVENT_BATCH_SIZE = 10
QUEUE_NAME_PREFIX_MAX = 12  # 12 + a 64-character workflow id + "-dlq" = SQS's 80-character limit


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: str
    range_key: str


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table: string keys ``pk`` (+ ``sk``), TTL on ``expires_at``."""

    logical_id: str
    env_var: str
    purpose: str
    range_key: str | None = "sk"
    indexes: tuple[IndexSpec, ...] = ()

    @property
    def attributes(self) -> list[str]:
        names = ["pk"] + ([self.range_key] if self.range_key else [])
        for index in self.indexes:
            names += [index.hash_key, index.range_key]
        return list(dict.fromkeys(names))


TABLES: tuple[TableSpec, ...] = (
    TableSpec("EventsTable", settings.ENV_EVENTS_TABLE, "events, per-topic sequence counters, client event ids"),
    TableSpec(
        "RunsTable",
        settings.ENV_RUNS_TABLE,
        "runs, their journaled steps and batch membership",
        indexes=(IndexSpec("by_workflow", "wf", "created_at"),),
    ),
    TableSpec("ApiKeysTable", settings.ENV_KEYS_TABLE, "API keys (SHA-256 hashes only)", range_key=None),
    TableSpec("IdempotencyTable", settings.ENV_IDEMPOTENCY_TABLE, "Idempotency-Key records (24 h)", range_key=None),
)


@dataclass(frozen=True)
class WorkflowQueue:
    """A workflow's queue, dead-letter queue and event source mapping."""

    workflow_id: str
    topic: str | None
    batch: bool
    batch_size: int
    batching_window_seconds: int | None

    def queue_name(self, prefix: str) -> str:
        return prefix + self.workflow_id

    def dlq_name(self, prefix: str) -> str:
        return prefix + self.workflow_id + "-dlq"


@dataclass(frozen=True)
class AppModel:
    """Everything an app needs deployed: tables, one queue per workflow, the subscription manifest."""

    tables: tuple[TableSpec, ...]
    queues: tuple[WorkflowQueue, ...]

    @property
    def manifest(self) -> Manifest:
        return Manifest(
            workflows={q.workflow_id: WorkflowEntry(id=q.workflow_id, topic=q.topic, batch=q.batch) for q in self.queues}
        )


def build_model(app: App) -> AppModel:
    """The infrastructure of ``app`` (workflows in id order, so renders are deterministic)."""
    queues = tuple(
        WorkflowQueue(
            workflow_id=wf.id,
            topic=wf.topic,
            batch=wf.is_batch,
            batch_size=wf.batch_size if wf.is_batch else SINGLE_EVENT_BATCH_SIZE,
            batching_window_seconds=wf.batch_timeout_seconds,
        )
        for wf in app
    )
    return AppModel(tables=TABLES, queues=queues)

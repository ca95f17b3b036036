"""The one model of the infrastructure, read by the template renderer and by the local stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polos.app import App
from polos.aws import settings
from polos.aws.attempts import receive_limit
from polos.publish.manifest import Manifest, WorkflowEntry, options_of, plain
from polos.publish.messages import MAX_MESSAGE_BYTES
from polos.schedules import Schedule

TTL_ATTRIBUTE = "expires_at"
SINGLE_EVENT_BATCH_SIZE = 10
QUEUE_NAME_PREFIX_MAX = 12  # 12 + a 64-character workflow id + "-dlq" = SQS's 80-character limit
DEFAULT_QUEUE_NAME_PREFIX = "polos-dev-"
DEFAULT_RETENTION_DAYS = 30
QUEUE_RETENTION_SECONDS = 7 * 86_400  # a run whose worker is broken waits a week for a fix
DLQ_RETENTION_SECONDS = 14 * 86_400  # SQS's maximum, so dead letters outlive their source messages
# Set explicitly on every queue and dead-letter queue (a redriven message must fit back): SQS's maximum.
QUEUE_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES

# The worker's Lambda timeout is also a run's lease (POLOS_LEASE_SECONDS): an attempt that still holds its
# lease may still be running, so no duplicate delivery may take the run over before the timeout has passed.
WORKER_TIMEOUT_SECONDS = 120
# AWS: a queue feeding Lambda needs a visibility timeout of at least 6 x the function timeout (room for
# throttled retries), plus the batching window during which received messages wait for their batch.
VISIBILITY_TIMEOUT_FACTOR = 6


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index. ``KEYS_ONLY``: a write of an item that leaves the index's keys unchanged
    writes nothing to the index (readers fetch the items by key). Changing the projection of a deployed
    table makes CloudFormation replace the index (it is rebuilt from the table, meanwhile unavailable)."""

    name: str
    hash_key: str
    range_key: str
    projection: str = "KEYS_ONLY"


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

    def key_properties(self) -> dict[str, Any]:
        """Billing, attributes, keys and indexes: what CloudFormation and CreateTable share."""
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        if self.range_key:
            keys.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        properties: dict[str, Any] = {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in self.attributes],
            "KeySchema": keys,
        }
        if self.indexes:
            properties["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.hash_key, "KeyType": "HASH"},
                        {"AttributeName": index.range_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": index.projection},
                }
                for index in self.indexes
            ]
        return properties


EVENTS_TABLE = TableSpec(
    "EventsTable", settings.ENV_EVENTS_TABLE, "events, per-topic sequence counters, client event ids"
)
RUNS_TABLE = TableSpec(
    "RunsTable",
    settings.ENV_RUNS_TABLE,
    "runs, their journaled steps and batch membership",
    indexes=(IndexSpec("by_workflow", "wf", "created_at"),),
)
KEYS_TABLE = TableSpec(
    "ApiKeysTable", settings.ENV_KEYS_TABLE, "API keys (SHA-256 hashes only)", range_key=None
)
IDEMPOTENCY_TABLE = TableSpec(
    "IdempotencyTable", settings.ENV_IDEMPOTENCY_TABLE, "Idempotency-Key records (24 h)", range_key=None
)
TABLES: tuple[TableSpec, ...] = (EVENTS_TABLE, RUNS_TABLE, KEYS_TABLE, IDEMPOTENCY_TABLE)


@dataclass(frozen=True)
class Route:
    """An HTTP API route (DESIGN §2); every route goes to the API function, which checks the API key."""

    name: str
    method: str
    path: str


ROUTES: tuple[Route, ...] = (
    Route("PublishEvents", "POST", "/api/v1/events/publish"),
    Route("ListEvents", "GET", "/api/v1/events"),
    Route("RunWorkflow", "POST", "/api/v1/workflows/{workflow_id}/run"),
    Route("GetRun", "GET", "/api/v1/runs/{run_id}"),
    Route("ListRuns", "GET", "/api/v1/runs"),
    Route("GetExecution", "GET", "/api/v1/executions/{id}"),
    Route("GetQueue", "GET", "/api/v1/queues/{name}"),
    # The dashboard's static files: they hold no data, so the API function serves them without a key.
    Route("Dashboard", "GET", "/ui"),
    Route("DashboardAsset", "GET", "/ui/{asset}"),
    Route("ListWorkflows", "GET", "/api/v1/workflows"),
    Route("ListDeadLetters", "GET", "/api/v1/workflows/{workflow_id}/dead-letters"),
    Route("RedriveDeadLetters", "POST", "/api/v1/workflows/{workflow_id}/dead-letters/redrive"),
)


@dataclass(frozen=True)
class TableAccess:
    """DynamoDB actions a function may call on one table, and on each of its indexes (``index_actions``).

    There is no IAM action for transactions: ``TransactWriteItems`` is authorised item by item as ``PutItem``
    / ``UpdateItem`` / ``DeleteItem`` / ``ConditionCheckItem`` (and ``TransactGetItems`` as ``GetItem``).
    """

    table: TableSpec
    actions: tuple[str, ...]
    index_actions: tuple[str, ...] = ()


# Publishing: reserve sequence ids (UpdateItem), store events (BatchWriteItem, or PutItem in the claim
# transactions of client-given ids), read claimed ids and stored events (BatchGetItem).
_PUBLISH_ACTIONS = (
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PutItem",
    "dynamodb:BatchGetItem",
)


# sqs:SendMessage also authorises SendMessageBatch. The consuming function's role is what Lambda's event
# source mapping uses to poll its queues: exactly these three actions (AWSLambdaSQSQueueExecutionRole);
# the code itself never receives, deletes or changes visibility.
SEND_ACTIONS = ("sqs:SendMessage",)
CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
# Listing dead letters receives them and makes them visible again; redrive deletes them; their count.
DEAD_LETTER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
)


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its entry point, limits and exactly the data it may touch."""

    logical_id: str
    handler: str
    description: str
    timeout_seconds: int
    memory_mb: int
    tables: tuple[TableAccess, ...]
    sends_to_queues: bool = False  # SEND_ACTIONS on each workflow queue (by ARN)
    consumes_queues: bool = False  # the workflow queues' event source mappings invoke it (CONSUME_ACTIONS)
    serves_api: bool = False  # every HTTP API route invokes it; it checks the API key on every request
    sweeps_timers: bool = False  # invoked every minute to send the wake-ups of due timers
    # Lists and redrives the dead-letter queues (DEAD_LETTER_ACTIONS on each one, by ARN).
    manages_dead_letters: bool = False
    # Sends a message whose run spent its max_attempts to its dead-letter queue (SEND_ACTIONS, by ARN).
    sends_dead_letters: bool = False
    # Makes the EventBridge Scheduler schedules of ``schedule=True`` workflows (SCHEDULE_ACTIONS in the
    # app's schedule group, and passing the scheduler role), when the app has such a workflow.
    manages_schedules: bool = False

    @property
    def queue_actions(self) -> tuple[str, ...]:
        """The SQS actions granted on each workflow queue (none: no queue statement at all)."""
        return (SEND_ACTIONS if self.sends_to_queues else ()) + (
            CONSUME_ACTIONS if self.consumes_queues else ()
        )


API_FUNCTION = FunctionSpec(
    "ApiFunction",
    "api/app.handler",
    "Polos HTTP API: publish events, run workflows, read runs",
    timeout_seconds=29,  # an HTTP API integration times out after 30 s
    memory_mb=512,
    tables=(
        TableAccess(KEYS_TABLE, ("dynamodb:GetItem",)),  # the API key check of every request
        # + listing a topic and matching its event waiters (Query); DeleteItem: a matched waiter's removal
        # GetItem: a topic's counter, read by a listing (the last of the topic's event blocks).
        TableAccess(
            EVENTS_TABLE, (*_PUBLISH_ACTIONS, "dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:GetItem")
        ),
        TableAccess(IDEMPOTENCY_TABLE, ("dynamodb:GetItem", "dynamodb:PutItem")),
        TableAccess(
            RUNS_TABLE,
            # DeleteItem: a queued run whose message could not be sent is removed (runs.discard_queued);
            # UpdateItem: cancel, and completing a waiting step (resume, a matched event); BatchGetItem: the
            # runs a list page names (the by_workflow index projects keys only); GetItem: a queue's slot
            # shards (GET /api/v1/queues/{name})
            (
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:DeleteItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
            ),
            index_actions=("dynamodb:Query",),
        ),
    ),
    sends_to_queues=True,
    manages_dead_letters=True,
    serves_api=True,
    manages_schedules=True,
)
WORKER_FUNCTION = FunctionSpec(
    "WorkerFunction",
    "worker/app.handler",
    "Polos worker: runs workflows from their SQS queues",
    timeout_seconds=WORKER_TIMEOUT_SECONDS,
    memory_mb=512,
    tables=(
        TableAccess(
            RUNS_TABLE,
            # GetItem: the cancel check at step boundaries, a completed waiting step read back;
            # ConditionCheckItem: a step written fenced by the lease (in its last margin, or the pending last
            # step of a result kept apart) checks the run item's lease owner in the same transaction;
            # DeleteItem: a run that took its queue slot leaves the key's backlog (polos.runtime.slots)
            (
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:ConditionCheckItem",
            ),
        ),
        # ctx.step.publish_event publishes like the API, always with a client-given (deterministic) id: its
        # events are stored in claim transactions (PutItem); BatchWriteItem: the gap markers of sequence ids
        # reserved by an attempt whose id another attempt claimed first. wait_for_event/suspend:
        # the topic's anchor (GetItem), waiter registration/removal (PutItem/DeleteItem/UpdateItem in
        # transactions), the look-back and the waiters of a published topic (Query).
        TableAccess(
            EVENTS_TABLE,
            (
                "dynamodb:UpdateItem",
                "dynamodb:PutItem",
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
            ),
        ),
    ),
    sends_to_queues=True,
    consumes_queues=True,
    sends_dead_letters=True,
)
TIMERS_FUNCTION = FunctionSpec(
    "TimersFunction",
    "timers/app.handler",
    "Polos timers: every minute, wakes the runs whose waits are due",
    # One sweep a minute, each ending its pages before the next begins (a late one is kept off the shards
    # still being worked by their leases); no reserved concurrency: overlapping sweeps are harmless.
    timeout_seconds=60,
    # 1 vCPU (Lambda allots CPU by memory; 1,769 MB is one): a backlog keeps 10 threads of requests busy.
    memory_mb=1769,
    tables=(
        TableAccess(
            RUNS_TABLE,
            # UpdateItem: a shard's lease (polos.runtime.timer_leases)
            ("dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"),
        ),
    ),
    sends_to_queues=True,
    sweeps_timers=True,
)
FUNCTIONS: tuple[FunctionSpec, ...] = (API_FUNCTION, WORKER_FUNCTION, TIMERS_FUNCTION)


@dataclass(frozen=True)
class WorkflowQueue:
    """A workflow's queue, dead-letter queue and event source mapping."""

    workflow_id: str
    topic: str | None
    batch: bool
    batch_size: int
    batching_window_seconds: int | None
    schedule: Schedule | None = None  # fired by an EventBridge Scheduler schedule onto this queue
    schedulable: bool = False  # ``schedule=True``: the API function makes its schedules at run time
    # ``@workflow(max_attempts=N)``: its queue's receive count is sized behind it; ``None``: the deployment's.
    max_attempts: int | None = None
    # ``@workflow(state_schema=...)``: the API takes an ``initial_state`` for it (the manifest says so).
    state: bool = False
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # shown by GET /api/v1/workflows
    # ``@workflow(max_concurrency=N)``: the mapping's ScalingConfig.MaximumConcurrency (``None``: Lambda's).
    max_concurrency: int | None = None
    # ``@workflow(queue=...)``: its name and limit (the manifest carries them for the queues API).
    queue: str | None = None
    concurrency_limit: int | None = None

    def receive_limit(self, default_attempts: int) -> int:
        """The queue's ``maxReceiveCount`` when the deployment allows ``default_attempts`` executions."""
        return receive_limit(self.max_attempts or default_attempts)

    def queue_name(self, prefix: str) -> str:
        return prefix + self.workflow_id

    def dlq_name(self, prefix: str) -> str:
        return prefix + self.workflow_id + "-dlq"

    @property
    def visibility_timeout_seconds(self) -> int:
        """What the deployed queue uses: 6 x the worker timeout plus the batching window."""
        return VISIBILITY_TIMEOUT_FACTOR * WORKER_TIMEOUT_SECONDS + (self.batching_window_seconds or 0)


@dataclass(frozen=True)
class AppModel:
    """Everything an app needs deployed: tables, one queue per workflow, functions, the manifest."""

    tables: tuple[TableSpec, ...]
    queues: tuple[WorkflowQueue, ...]
    functions: tuple[FunctionSpec, ...] = field(default=FUNCTIONS)
    routes: tuple[Route, ...] = field(default=ROUTES)

    def function(self, role: str) -> FunctionSpec:
        """The function flagged ``role`` (``serves_api`` or ``consumes_queues``)."""
        (spec,) = (spec for spec in self.functions if getattr(spec, role))
        return spec

    @property
    def manifest(self) -> Manifest:
        return Manifest(
            workflows={
                q.workflow_id: WorkflowEntry(
                    id=q.workflow_id,
                    topic=q.topic,
                    batch=q.batch,
                    batch_size=q.batch_size,
                    batch_window_seconds=q.batching_window_seconds,
                    schedule=None if q.schedule is None else plain(q.schedule),
                    options=q.options,
                    state=q.state,
                    schedulable=q.schedulable,
                    queue=q.queue,
                    concurrency_limit=q.concurrency_limit,
                )
                for q in self.queues
            }
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
            schedule=wf.schedule,
            schedulable=wf.schedulable,
            max_attempts=wf.max_attempts,
            state=wf.state_schema is not None,
            options=options_of(wf),
            max_concurrency=wf.max_concurrency,
            queue=wf.queue.name if wf.queue is not None else None,
            concurrency_limit=wf.queue.concurrency_limit if wf.queue is not None else None,
        )
        for wf in app
    )
    return AppModel(tables=TABLES, queues=queues)

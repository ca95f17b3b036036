"""The one place that reads the environment and makes AWS clients.

Every table name, queue address and limit the runtime uses comes from here, so nothing is tied to one
account, region or stage. botocore itself honours ``AWS_ENDPOINT_URL`` (and the per-service variants),
which is how the local stack and tests point the very same code at moto. Clients come from botocore alone:
boto3 adds nothing the runtime uses and its import drags in s3transfer (cold start, issue 12).
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import DataNotFoundError

from polos.aws import retries
from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS, MIN_MAX_ATTEMPTS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

ENV_EVENTS_TABLE = "POLOS_EVENTS_TABLE"
ENV_RUNS_TABLE = "POLOS_RUNS_TABLE"
ENV_KEYS_TABLE = "POLOS_KEYS_TABLE"
ENV_IDEMPOTENCY_TABLE = "POLOS_IDEMPOTENCY_TABLE"
ENV_QUEUE_URL_PREFIX = "POLOS_QUEUE_URL_PREFIX"
ENV_MANIFEST_PATH = "POLOS_MANIFEST_PATH"
ENV_MAX_ATTEMPTS = "POLOS_MAX_ATTEMPTS"
ENV_RETENTION_DAYS = "POLOS_RETENTION_DAYS"
ENV_LEASE_SECONDS = "POLOS_LEASE_SECONDS"
ENV_APP = "POLOS_APP"
ENV_TRACING = "POLOS_TRACING"
ENV_SCHEDULE_GROUP = "POLOS_SCHEDULE_GROUP"
ENV_SCHEDULER_ROLE_ARN = "POLOS_SCHEDULER_ROLE_ARN"


DEAD_LETTER_SUFFIX = "-dlq"


class ConfigurationError(RuntimeError):
    """A required setting is missing or malformed."""


def _int_env(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"{minimum} to {maximum}"
        raise ConfigurationError(f"{name} must be {bounds}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Names and limits read from the environment (see ``template.yaml`` for where they are set)."""

    events_table: str
    runs_table: str
    keys_table: str
    idempotency_table: str
    queue_url_prefix: str
    manifest_path: str
    max_attempts: int
    retention_days: int
    lease_seconds: int
    app_module: str
    tracing: bool
    # EventBridge Scheduler: the group holding the schedules made at run time, and the role they run as.
    schedule_group: str = ""
    scheduler_role_arn: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            events_table=os.environ.get(ENV_EVENTS_TABLE, "polos-events"),
            runs_table=os.environ.get(ENV_RUNS_TABLE, "polos-runs"),
            keys_table=os.environ.get(ENV_KEYS_TABLE, "polos-api-keys"),
            idempotency_table=os.environ.get(ENV_IDEMPOTENCY_TABLE, "polos-idempotency"),
            queue_url_prefix=os.environ.get(ENV_QUEUE_URL_PREFIX, ""),
            manifest_path=os.environ.get(ENV_MANIFEST_PATH, "polos_manifest.json"),
            max_attempts=_int_env(ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS, MIN_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS),
            retention_days=_int_env(ENV_RETENTION_DAYS, 30),
            lease_seconds=_int_env(ENV_LEASE_SECONDS, 900),
            app_module=os.environ.get(ENV_APP, "workflows"),
            # The template's ``Tracing`` parameter: X-Ray costs ~0.5 s of import and $5 per million traces,
            # so it is opt-in.
            tracing=os.environ.get(ENV_TRACING, "PassThrough") == "Active",
            schedule_group=os.environ.get(ENV_SCHEDULE_GROUP, ""),
            scheduler_role_arn=os.environ.get(ENV_SCHEDULER_ROLE_ARN, ""),
        )

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 86_400

    def queue_url(self, workflow_id: str) -> str:
        """The URL of a workflow's queue: ``POLOS_QUEUE_URL_PREFIX`` + workflow id."""
        if not self.queue_url_prefix:
            raise ConfigurationError(f"{ENV_QUEUE_URL_PREFIX} is not set; cannot address workflow queues")
        return self.queue_url_prefix + workflow_id

    def queue_arn(self, workflow_id: str) -> str:
        """The ARN of a workflow's queue, from its URL (``…/<account>/<name>``) and SQS's region."""
        account, _, name = urllib.parse.urlsplit(self.queue_url(workflow_id)).path.strip("/").partition("/")
        return f"arn:aws:sqs:{sqs().meta.region_name}:{account}:{name}"

    def dead_letter_queue_url(self, workflow_id: str) -> str:
        """The URL of a workflow's dead-letter queue (its queue's name + ``-dlq``)."""
        return self.queue_url(workflow_id) + DEAD_LETTER_SUFFIX


# Throttling and transient errors are retried with backoff inside botocore (polos.aws.retries: within the
# invocation's time budget, then InfrastructureThrottled), so our own code only handles the partial failures
# the APIs report in their answers (unprocessed items, failed batch entries).
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": retries.MAX_ATTEMPTS},
    connect_timeout=retries.CONNECT_TIMEOUT_SECONDS,
    read_timeout=retries.READ_TIMEOUT_SECONDS,
    tcp_keepalive=True,
)


@functools.cache
def get_settings() -> Settings:
    """The settings of this process (cached; ``reset()`` re-reads the environment)."""
    return Settings.from_env()


SERVICES = ("dynamodb", "sqs", "scheduler")


class _ModelLoader(botocore.loaders.Loader):
    """botocore's service-model loader, told which services the runtime uses.

    botocore lists the services it knows only to refuse an unknown name, and listing them walks every
    service's directory (~400, twice per first client: ~17 ms of a cold start, issue 12). Here the list is
    :data:`SERVICES` whose models exist; everything else (versions, files, caching) is botocore's own.
    """

    def list_available_services(self, type_name: str) -> list[str]:
        found = []
        for service in SERVICES:
            try:
                self.list_api_versions(service, type_name)
            except DataNotFoundError:
                continue
            found.append(service)
        return found


@functools.cache
def _model_loader() -> botocore.loaders.Loader:
    """botocore's service-model loader, kept across ``reset()``: parsing the models costs ~0.5 s."""
    return _ModelLoader()


@functools.cache
def _session() -> botocore.session.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _model_loader())
    return core


@functools.cache
def dynamodb() -> DynamoDBClient:
    """The process-wide DynamoDB client."""
    client = _session().create_client("dynamodb", config=_CLIENT_CONFIG)
    retries.install(client)
    return cast("DynamoDBClient", client)


@functools.cache
def sqs() -> SQSClient:
    """The process-wide SQS client."""
    client = _session().create_client("sqs", config=_CLIENT_CONFIG)
    retries.install(client)
    return cast("SQSClient", client)


@functools.cache
def scheduler() -> Any:
    """The process-wide EventBridge Scheduler client (the schedules made at run time)."""
    client = _session().create_client("scheduler", config=_CLIENT_CONFIG)
    retries.install(client)
    return client


def reset() -> None:
    """Forget cached settings and clients (after the environment changed, e.g. in tests)."""
    get_settings.cache_clear()
    _session.cache_clear()
    dynamodb.cache_clear()
    sqs.cache_clear()
    scheduler.cache_clear()

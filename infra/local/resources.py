"""Create an app model's tables and queues in moto (or any endpoint boto3 is pointed at)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS

from infra.local.aws import ACCOUNT_ID
from infra.model import DLQ_RETENTION_SECONDS, QUEUE_MAX_MESSAGE_BYTES, TTL_ATTRIBUTE, AppModel, TableSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class LocalNames:
    """Names of the local resources; ``env()`` is what the handlers read them from."""

    prefix: str
    queue_url_prefix: str
    manifest_path: str

    def table(self, spec: TableSpec) -> str:
        return f"{self.prefix}{spec.logical_id}"

    def env(self, model: AppModel) -> dict[str, str]:
        from polos.aws import settings

        names = {spec.env_var: self.table(spec) for spec in model.tables}
        names[settings.ENV_QUEUE_URL_PREFIX] = self.queue_url_prefix
        names[settings.ENV_MANIFEST_PATH] = self.manifest_path
        if any(queue.schedulable for queue in model.queues):
            names[settings.ENV_SCHEDULE_GROUP] = self.schedule_group
            names[settings.ENV_SCHEDULER_ROLE_ARN] = scheduler_role_arn(self.prefix)
        return names

    @property
    def schedule_group(self) -> str:
        """The EventBridge Scheduler group of the schedules made at run time (``schedule=True``)."""
        return schedule_group_name(self.prefix)


def schedule_group_name(prefix: str) -> str:
    """The local stack's schedule group (the template's ``ScheduleGroup``)."""
    return f"{prefix}schedules"


def scheduler_role_arn(prefix: str) -> str:
    """The ARN the local stack gives the template's ``SchedulerRole`` (no IAM here: a name only)."""
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{prefix}SchedulerRole"


def create_table(client: DynamoDBClient, spec: TableSpec, name: str) -> None:
    kwargs = {"TableName": name, **spec.key_properties()}
    client.create_table(**kwargs)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


def create_resources(
    model: AppModel,
    names: LocalNames,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    *,
    visibility_timeout: int = 30,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    visibility_timeouts: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Create every table and queue of ``model``; returns workflow id → queue URL.

    Every queue gets ``visibility_timeout`` unless ``visibility_timeouts`` names its workflow.
    """
    overrides = visibility_timeouts or {}
    for spec in model.tables:
        create_table(dynamodb, spec, names.table(spec))
    urls: dict[str, str] = {}
    for queue in model.queues:
        dlq_url = sqs.create_queue(
            QueueName=queue.dlq_name(names.prefix),
            Attributes={
                "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
                "MaximumMessageSize": str(QUEUE_MAX_MESSAGE_BYTES),
            },
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        urls[queue.workflow_id] = sqs.create_queue(
            QueueName=queue.queue_name(names.prefix),
            Attributes={
                "VisibilityTimeout": str(overrides.get(queue.workflow_id, visibility_timeout)),
                "MaximumMessageSize": str(QUEUE_MAX_MESSAGE_BYTES),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.receive_limit(max_attempts)}
                ),
            },
        )["QueueUrl"]
    os.makedirs(os.path.dirname(names.manifest_path) or ".", exist_ok=True)
    with open(names.manifest_path, "w") as handle:
        handle.write(model.manifest.to_json())
    return urls

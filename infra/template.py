"""Render the SAM template and the subscription manifest from the infrastructure model, and check them.

Rendering is a pure function of the model: same app, same bytes (no timestamps, stable order). Intrinsics
are written long-form (``Fn::Sub``, ``Ref``, ``Fn::GetAtt``) so plain YAML tools read the file.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from polos.aws import settings
from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS, MIN_MAX_ATTEMPTS, receive_limit
from polos.publish.messages import WorkflowMessage
from polos.schedules import Schedule

from infra.model import (
    DEAD_LETTER_ACTIONS,
    DEFAULT_QUEUE_NAME_PREFIX,
    DEFAULT_RETENTION_DAYS,
    DLQ_RETENTION_SECONDS,
    QUEUE_MAX_MESSAGE_BYTES,
    QUEUE_NAME_PREFIX_MAX,
    QUEUE_RETENTION_SECONDS,
    SEND_ACTIONS,
    TTL_ATTRIBUTE,
    WORKER_TIMEOUT_SECONDS,
    AppModel,
    FunctionSpec,
    TableSpec,
    WorkflowQueue,
)

TEMPLATE_PATH = "template.yaml"
MANIFEST_PATH = "functions/polos_manifest.json"  # the API function reads it from its package (/var/task)
FUNCTIONS_DIR = "functions"  # the functions' code package (CodeUri)
LAYER_DIR = "shared"  # the layer's sources: the polos package and its requirements (ContentUri)
LAYER_ID = "PolosLayer"
BUILD_MAKEFILE = "Makefile"  # in each of the two: `sam build` runs its build-<LogicalId> target
RUNTIME = "python3.12"
ARCHITECTURE = "arm64"
# pip's platform tag of each Lambda architecture (wheels for Amazon Linux 2023's glibc).
WHEEL_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
# Retention periods CloudWatch Logs accepts (up to 7 years).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
# X-Ray's write actions accept no resource but "*"; AWS's managed policy holds that one statement so that
# every statement this template writes names its resources.
XRAY_POLICY = "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
# CloudFormation's per-template quotas. The SAM transform adds to the resources written here the API's
# stage and Lambda permissions: at most one per route.
MAX_RESOURCES = 500
MAX_OUTPUTS = 200

QUEUE_URL_PREFIX = {
    "Fn::Sub": "https://sqs.${AWS::Region}.${AWS::URLSuffix}/${AWS::AccountId}/${QueueNamePrefix}"
}
# IAM's quota on a role's inline policies, white space not counted. Each workflow queue is named by its own
# ARN in the roles that touch it (a prefix wildcard could reach another stack's queues), so the policy grows
# with the workflows; its resolved size is bounded from above before deploying (_check_policy_sizes).
MAX_ROLE_POLICY_CHARS = 10_240
# "arn:" + partition (aws-us-gov, 10) + ":sqs:" + region (ap-southeast-2, 14) + ":" + account (12) + ":"
QUEUE_ARN_HEAD_MAX = 4 + 10 + 5 + 14 + 1 + 12 + 1
# Any other resolved intrinsic (a generated table or log group ARN: stack name ≤ 128 + logical id + suffix).
OTHER_INTRINSIC_MAX = 256

Doc = dict[str, Any]

# A workflow's queue and dead-letter queue may still hold messages (runs not yet done, dead letters not yet
# redriven) when the workflow is removed from the app or a change replaces the queue: CloudFormation keeps
# them (and their messages) instead of deleting them; `polos template` names the queues so left behind.
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
WORKFLOW_TAG = "polos:workflow"


class TemplateError(ValueError):
    """The app cannot be expressed as one CloudFormation stack."""


def logical_name(workflow_id: str) -> str:
    """The CloudFormation name part of a workflow: ``batch-processor`` → ``BatchProcessor``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", workflow_id))


def _names(queues: tuple[WorkflowQueue, ...]) -> dict[str, str]:
    """Workflow id → logical name, refusing two workflows that would share one."""
    taken: dict[str, str] = {}
    for queue in queues:
        name = logical_name(queue.workflow_id)
        if name in taken:
            raise TemplateError(
                f"workflows {taken[name]!r} and {queue.workflow_id!r} both map to the CloudFormation name "
                f"{name!r} (ids lose '-', '_' and the case of each part's first letter); rename one of them"
            )
        taken[name] = queue.workflow_id
    return {wf_id: name for name, wf_id in taken.items()}


def _ref(name: str) -> Doc:
    return {"Ref": name}


def _arn(logical_id: str) -> Doc:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _stage_tags() -> Doc:
    return {"polos:stage": _ref("Stage")}


def _stage_tag_list() -> list[Doc]:
    return [{"Key": key, "Value": value} for key, value in _stage_tags().items()]


RECEIVE_LIMITS = "ReceiveLimits"
_ATTEMPTS = range(MIN_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS + 1)


def _receive_limit(queue: WorkflowQueue) -> Any:
    """A queue's ``maxReceiveCount``: behind its workflow's own ``max_attempts``, else the parameter's."""
    if queue.max_attempts is not None:
        return receive_limit(queue.max_attempts)
    return {"Fn::FindInMap": [RECEIVE_LIMITS, _ref("MaxAttempts"), "MaxReceiveCount"]}


def _parameters() -> Doc:
    return {
        "Stage": {
            "Type": "String",
            "Default": "dev",
            "AllowedPattern": "^[a-z0-9-]{1,32}$",
            "Description": "Deployment stage; tags every resource.",
        },
        "RetentionDays": {
            "Type": "Number",
            "Default": DEFAULT_RETENTION_DAYS,
            "MinValue": 1,
            "MaxValue": 3650,
            "Description": "Days events and runs are kept (DynamoDB TTL).",
        },
        "MaxAttempts": {  # a String of listed values: each is a key of the ReceiveLimits mapping
            "Type": "String",
            "Default": str(DEFAULT_MAX_ATTEMPTS),
            "AllowedValues": [str(n) for n in _ATTEMPTS],
            "Description": "Executions of a workflow's code that may fail in a row for one message before "
            "the run is failed and dead-lettered (@workflow(max_attempts=N) wins); each queue's "
            "maxReceiveCount is sized behind it (ReceiveLimits)",
        },
        "LogLevel": {
            "Type": "String",
            "Default": "INFO",
            "AllowedValues": ["DEBUG", "INFO", "WARNING", "ERROR"],
            "Description": "Log level of the functions (Powertools Logger).",
        },
        "Tracing": {
            "Type": "String",
            "Default": "PassThrough",
            "AllowedValues": ["Active", "PassThrough"],
            "Description": "X-Ray tracing of the functions (Active: a subsegment per step; off by default "
            "for cold start and cost).",
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": list(LOG_RETENTION_DAYS),
            "Description": "Days the functions' CloudWatch logs are kept.",
        },
        "QueueNamePrefix": {
            "Type": "String",
            "Default": DEFAULT_QUEUE_NAME_PREFIX,
            "AllowedPattern": f"^[A-Za-z0-9_-]{{1,{QUEUE_NAME_PREFIX_MAX}}}$",
            "Description": "Prefix of the workflow queue names (queue = prefix + workflow id); unique per "
            "stack in an account and region.",
        },
        API_CONCURRENCY: {
            "Type": "Number",
            "Default": 0,
            "MinValue": 0,
            "MaxValue": 10000,
            "Description": "Concurrent executions reserved for the API function, so a workflow backlog "
            "cannot take them all (0: no reservation; AWS keeps 100 of the account's limit unreserved, so "
            "a reservation needs a limit of at least 100 + it; see docs/http-api.md).",
        },
    }


# The API function's reserved concurrency: a parameter, off (0) by default, since new accounts may have a
# concurrency limit of 10 and a reservation must leave AWS's 100 unreserved.
API_CONCURRENCY = "ApiReservedConcurrency"
RESERVES_API_CONCURRENCY = "ReservesApiConcurrency"


def _conditions() -> Doc:
    return {RESERVES_API_CONCURRENCY: {"Fn::Not": [{"Fn::Equals": [_ref(API_CONCURRENCY), "0"]}]}}


# Set for every function. pydantic looks for plugins by listing every installed distribution's entry points
# when it builds its first model (~10 ms of each cold start); Polos uses none.
FIXED_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "polos",
    "POWERTOOLS_METRICS_NAMESPACE": "Polos",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}


def _environment(model: AppModel, app_module: str) -> Doc:
    variables: Doc = {**FIXED_ENVIRONMENT, "POWERTOOLS_LOG_LEVEL": _ref("LogLevel")}
    variables.update({spec.env_var: _ref(spec.logical_id) for spec in model.tables})
    variables.update(
        {
            settings.ENV_QUEUE_URL_PREFIX: QUEUE_URL_PREFIX,
            settings.ENV_MANIFEST_PATH: Path(MANIFEST_PATH).name,
            settings.ENV_MAX_ATTEMPTS: _ref("MaxAttempts"),
            settings.ENV_RETENTION_DAYS: _ref("RetentionDays"),
            settings.ENV_LEASE_SECONDS: str(WORKER_TIMEOUT_SECONDS),
            settings.ENV_APP: app_module,
            settings.ENV_TRACING: _ref("Tracing"),
        }
    )
    return {"Variables": variables}


def _globals(model: AppModel, app_module: str) -> Doc:
    return {
        "Function": {
            "Runtime": RUNTIME,
            "Architectures": [ARCHITECTURE],
            "CodeUri": f"{FUNCTIONS_DIR}/",
            "Tracing": _ref("Tracing"),
            "Layers": [_ref(LAYER_ID)],
            "Environment": _environment(model, app_module),
            "Tags": _stage_tags(),
        }
    }


def _table(spec: TableSpec) -> Doc:
    # Encrypted at rest with DynamoDB's AWS owned key (no SSESpecification): the AWS managed key
    # (SSEEnabled: true) encrypts no better and bills KMS requests (bench/fixed.py).
    properties: Doc = spec.key_properties()
    properties.update(
        {
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "Tags": _stage_tag_list(),
        }
    )
    # Events and runs are the product's data: deleting or replacing the stack must not delete them.
    return {"Type": "AWS::DynamoDB::Table", **RETAIN, "Properties": properties}


def _statements(spec: FunctionSpec, queues: tuple[WorkflowQueue, ...], names: dict[str, str]) -> list[Doc]:
    statements: list[Doc] = [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": _arn(f"{spec.logical_id}LogGroup"),
        }
    ]
    for access in spec.tables:
        table = access.table.logical_id
        statements.append(
            {"Sid": table, "Effect": "Allow", "Action": list(access.actions), "Resource": [_arn(table)]}
        )
        if access.index_actions and access.table.indexes:
            indexes = [{"Fn::Sub": f"${{{table}.Arn}}/index/{index.name}"} for index in access.table.indexes]
            statements.append(
                {
                    "Sid": f"{table}Indexes",
                    "Effect": "Allow",
                    "Action": list(access.index_actions),
                    "Resource": indexes,
                }
            )
    if spec.queue_actions and queues:
        statements.append(
            {
                "Sid": "WorkflowQueues",
                "Effect": "Allow",
                "Action": list(spec.queue_actions),
                "Resource": [_arn(f"Queue{names[queue.workflow_id]}") for queue in queues],
            }
        )
    if spec.manages_dead_letters and queues:
        statements.append(
            {
                "Sid": "DeadLetterQueues",
                "Effect": "Allow",
                "Action": list(DEAD_LETTER_ACTIONS),
                "Resource": [_arn(f"DeadLetterQueue{names[queue.workflow_id]}") for queue in queues],
            }
        )
    if spec.manages_schedules and any(queue.schedulable for queue in queues):
        statements.extend(_schedule_statements())
    if spec.sends_dead_letters and queues:
        statements.append(
            {
                "Sid": "SpentMessages",
                "Effect": "Allow",
                "Action": list(SEND_ACTIONS),
                "Resource": [_arn(f"DeadLetterQueue{names[queue.workflow_id]}") for queue in queues],
            }
        )
    return statements


def _role(spec: FunctionSpec, queues: tuple[WorkflowQueue, ...], names: dict[str, str]) -> Doc:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"Least privilege for {spec.logical_id}",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "ManagedPolicyArns": [{"Fn::Sub": XRAY_POLICY}],
            "Policies": [
                {
                    "PolicyName": "polos",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": _statements(spec, queues, names),
                    },
                }
            ],
            "Tags": _stage_tag_list(),
        },
    }


def _function(spec: FunctionSpec, model: AppModel) -> Doc:
    properties: Doc = {
        "Description": spec.description,
        "Handler": spec.handler,
        "Timeout": spec.timeout_seconds,
        "MemorySize": spec.memory_mb,
        "Role": _arn(f"{spec.logical_id}Role"),
        "LoggingConfig": {"LogGroup": _ref(f"{spec.logical_id}LogGroup")},
    }
    if spec.manages_schedules and any(queue.schedulable for queue in model.queues):
        properties["Environment"] = {
            "Variables": {
                settings.ENV_SCHEDULE_GROUP: _ref(SCHEDULE_GROUP),
                settings.ENV_SCHEDULER_ROLE_ARN: _arn(SCHEDULER_ROLE),
            }
        }
    if spec.serves_api:
        events: Doc = {
            route.name: {
                "Type": "HttpApi",
                "Properties": {
                    "ApiId": _ref("HttpApi"),
                    "Method": route.method,
                    "Path": route.path,
                },
            }
            for route in model.routes
        }
        # Any other method or path reaches the API too, so it answers with the JSON errors of DESIGN §2.
        events["AnyOtherRoute"] = {"Type": "HttpApi", "Properties": {"ApiId": _ref("HttpApi")}}
        properties["Events"] = events
        properties["ReservedConcurrentExecutions"] = {
            "Fn::If": [RESERVES_API_CONCURRENCY, _ref(API_CONCURRENCY), _ref("AWS::NoValue")]
        }
    return {"Type": "AWS::Serverless::Function", "Metadata": MAKEFILE_BUILD, "Properties": properties}


def _http_api() -> Doc:
    # No authorizer: the API function checks the key of every request itself (polos.api.keys), so that every
    # refusal is our 401 JSON (a missing header too) and a revoked key is refused from the next request.
    return {
        "Type": "AWS::Serverless::HttpApi",
        "Properties": {"Description": "Polos HTTP API", "Tags": _stage_tags()},
    }


def _layer() -> Doc:
    return {
        "Type": "AWS::Serverless::LayerVersion",
        "Metadata": {**MAKEFILE_BUILD, "BuildArchitecture": ARCHITECTURE},
        "Properties": {
            "Description": f"The polos runtime ({LAYER_DIR}/) and its dependencies",
            "ContentUri": f"{LAYER_DIR}/",
            "CompatibleRuntimes": [RUNTIME],
            "CompatibleArchitectures": [ARCHITECTURE],
            "RetentionPolicy": "Delete",
        },
    }


def _queue_resources(queue: WorkflowQueue, name: str, worker: FunctionSpec) -> Doc:
    dlq = f"DeadLetterQueue{name}"
    mapping: Doc = {
        "FunctionName": _ref(worker.logical_id),
        "EventSourceArn": _arn(f"Queue{name}"),
        "BatchSize": queue.batch_size,
    }
    if queue.batching_window_seconds is not None:
        mapping["MaximumBatchingWindowInSeconds"] = queue.batching_window_seconds
    if queue.max_concurrency is not None:
        mapping["ScalingConfig"] = {"MaximumConcurrency": queue.max_concurrency}
    mapping["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    return {
        dlq: {
            "Type": "AWS::SQS::Queue",
            **RETAIN,
            "Properties": {
                "QueueName": {"Fn::Sub": "${QueueNamePrefix}" + queue.workflow_id + "-dlq"},
                "SqsManagedSseEnabled": True,
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "MaximumMessageSize": QUEUE_MAX_MESSAGE_BYTES,
                "Tags": [{"Key": WORKFLOW_TAG, "Value": queue.workflow_id}],
            },
        },
        f"Queue{name}": {
            "Type": "AWS::SQS::Queue",
            **RETAIN,
            "Properties": {
                "QueueName": {"Fn::Sub": "${QueueNamePrefix}" + queue.workflow_id},
                "SqsManagedSseEnabled": True,
                "VisibilityTimeout": queue.visibility_timeout_seconds,
                "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
                "MaximumMessageSize": QUEUE_MAX_MESSAGE_BYTES,
                "RedrivePolicy": {
                    "deadLetterTargetArn": _arn(dlq),
                    "maxReceiveCount": _receive_limit(queue),
                },
                "Tags": [{"Key": WORKFLOW_TAG, "Value": queue.workflow_id}],
            },
        },
        f"EventSource{name}": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": mapping},
    }


def _resources(model: AppModel, names: dict[str, str]) -> Doc:
    resources: Doc = {"HttpApi": _http_api(), LAYER_ID: _layer()}
    for spec in model.functions:
        resources[spec.logical_id] = _function(spec, model)
        resources[f"{spec.logical_id}Role"] = _role(spec, model.queues, names)
        resources[f"{spec.logical_id}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"RetentionInDays": _ref("LogRetentionDays")},
        }
    for table in model.tables:
        resources[table.logical_id] = _table(table)
    for queue in model.queues:
        resources.update(_queue_resources(queue, names[queue.workflow_id], model.function("consumes_queues")))
    scheduled = [queue for queue in model.queues if queue.schedule is not None or queue.schedulable]
    timers = model.function("sweeps_timers").logical_id
    resources[SCHEDULER_ROLE] = _scheduler_role(timers, scheduled, names)
    if any(queue.schedulable for queue in model.queues):
        resources[SCHEDULE_GROUP] = {"Type": "AWS::Scheduler::ScheduleGroup", "Properties": {}}
    resources["TimersSchedule"] = {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "Description": "Every minute: the timers function sends the wake-ups of waits that are due",
            "ScheduleExpression": "rate(1 minute)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {"Arn": _arn(timers), "RoleArn": _arn(SCHEDULER_ROLE)},
        },
    }
    for queue in scheduled:
        if queue.schedule is not None:
            name = names[queue.workflow_id]
            resources[f"Schedule{name}"] = _schedule(queue, queue.schedule, name)
    return resources


SCHEDULER_ROLE = "SchedulerRole"
SCHEDULE_GROUP = "ScheduleGroup"
# What the API function does to the schedules of ``schedule=True`` workflows (runtime.schedule_registry).
SCHEDULE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
)


def _schedule_statements() -> list[Doc]:
    """The API function's grants for schedules made at run time: only those of the app's schedule group,
    listing (which IAM grants on no narrower resource than ``*``), and handing them the scheduler role."""
    return [
        {
            "Sid": "KeyedSchedules",
            "Effect": "Allow",
            "Action": list(SCHEDULE_ACTIONS),
            "Resource": {
                "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/"
                f"${{{SCHEDULE_GROUP}}}/*"
            },
        },
        {"Sid": "ListSchedules", "Effect": "Allow", "Action": ["scheduler:ListSchedules"], "Resource": "*"},
        {
            "Sid": "PassSchedulerRole",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": _arn(SCHEDULER_ROLE),
            "Condition": {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        },
    ]


def _schedule(queue: WorkflowQueue, schedule: Schedule, name: str) -> Doc:
    """An EventBridge Scheduler schedule putting a ``schedule`` message on the workflow's queue at each
    firing (the firing time filled in by Scheduler, so a firing delivered twice is one run)."""
    message = WorkflowMessage(queue.workflow_id, "schedule", scheduled_time="<aws.scheduler.scheduled-time>")
    return {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "Description": f"Runs {queue.workflow_id} at {schedule.cron} ({schedule.timezone})",
            "ScheduleExpression": schedule.aws_expression(),
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": _arn(f"Queue{name}"),
                "RoleArn": _arn(SCHEDULER_ROLE),
                "Input": message.to_json(),
            },
        },
    }


def _scheduler_role(timers: str, scheduled: list[WorkflowQueue], names: dict[str, str]) -> Doc:
    """What EventBridge Scheduler may do: invoke the timers function and send to the scheduled workflows'
    queues, nothing else."""
    statements: list[Doc] = [
        {
            "Sid": "InvokeTimers",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [_arn(timers)],
        }
    ]
    if scheduled:
        statements.append(
            {
                "Sid": "SendFirings",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [_arn(f"Queue{names[q.workflow_id]}") for q in scheduled],
            }
        )
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": "EventBridge Scheduler: the timers function, and scheduled workflows' firings",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "scheduler.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "polos-scheduler",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
            "Tags": _stage_tag_list(),
        },
    }


def _outputs(model: AppModel, names: dict[str, str]) -> Doc:
    outputs: Doc = {
        "ApiUrl": {
            "Description": "Base URL of the HTTP API (POLOS_API_URL)",
            "Value": {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"},
        }
    }
    for table in model.tables:
        outputs[f"{table.logical_id}Name"] = {
            "Description": f"{table.purpose} ({table.env_var})",
            "Value": _ref(table.logical_id),
        }
    outputs["QueueUrlPrefix"] = {
        "Description": f"Workflow queue URL = prefix + workflow id ({settings.ENV_QUEUE_URL_PREFIX})",
        "Value": QUEUE_URL_PREFIX,
    }
    for queue in model.queues:
        name = names[queue.workflow_id]
        outputs[f"QueueUrl{name}"] = {
            "Description": f"Queue of workflow {queue.workflow_id}",
            "Value": _ref(f"Queue{name}"),
        }
        outputs[f"DeadLetterQueueUrl{name}"] = {
            "Description": f"Dead-letter queue of workflow {queue.workflow_id}",
            "Value": _ref(f"DeadLetterQueue{name}"),
        }
    return outputs


def _check_quotas(doc: Doc, model: AppModel) -> None:
    generated = 1 + len(model.routes) + 1  # the API stage, a permission per route (+ any other)
    resources = len(doc["Resources"]) + generated
    if resources > MAX_RESOURCES or len(doc["Outputs"]) > MAX_OUTPUTS:
        raise TemplateError(
            f"{len(model.queues)} workflows need {resources} resources and {len(doc['Outputs'])} outputs; "
            f"one CloudFormation stack holds at most {MAX_RESOURCES} resources and {MAX_OUTPUTS} outputs "
            "(3 resources and 2 outputs per workflow): split the app into several stacks"
        )


def _resolved_size_bound(node: Any, lengths: dict[str, int]) -> int:
    """An upper bound of ``node``'s compact JSON size once CloudFormation has resolved its intrinsics;
    ``lengths``: resolved length of ``Fn::GetAtt [X, Arn]`` by logical id (else OTHER_INTRINSIC_MAX)."""
    if isinstance(node, dict) and len(node) == 1 and next(iter(node)) in ("Ref", "Fn::GetAtt", "Fn::Sub"):
        kind, value = next(iter(node.items()))
        resolved = lengths.get(value[0], OTHER_INTRINSIC_MAX) if kind == "Fn::GetAtt" else OTHER_INTRINSIC_MAX
        return resolved + 2 + (len(value) if kind == "Fn::Sub" else 0)  # quotes; a Sub's own text
    if isinstance(node, dict):
        return 2 + sum(len(json.dumps(k)) + 2 + _resolved_size_bound(v, lengths) for k, v in node.items())
    if isinstance(node, list):
        return 2 + sum(_resolved_size_bound(item, lengths) + 1 for item in node)
    return len(json.dumps(node))


def _check_policy_sizes(doc: Doc, model: AppModel, names: dict[str, str]) -> None:
    """Refuse an app whose roles could exceed IAM's inline policy quota once deployed."""
    lengths = {
        f"Queue{names[q.workflow_id]}": QUEUE_ARN_HEAD_MAX + QUEUE_NAME_PREFIX_MAX + len(q.workflow_id)
        for q in model.queues
    }
    lengths |= {
        f"DeadLetterQueue{names[q.workflow_id]}": lengths[f"Queue{names[q.workflow_id]}"] + len("-dlq")
        for q in model.queues
    }
    for spec in model.functions:
        policies = doc["Resources"][f"{spec.logical_id}Role"]["Properties"]["Policies"]
        size = sum(_resolved_size_bound(policy["PolicyDocument"], lengths) for policy in policies)
        if size > MAX_ROLE_POLICY_CHARS:
            raise TemplateError(
                f"{len(model.queues)} workflows: the role of {spec.logical_id} names each workflow queue and "
                f"may reach {size} characters once deployed; IAM allows {MAX_ROLE_POLICY_CHARS} per role "
                "(shorter workflow ids fit more): split the app into several stacks"
            )


def render_template(model: AppModel, app_module: str) -> Doc:
    """The SAM template of ``model``; the worker imports the workflows from ``app_module``."""
    names = _names(model.queues)
    doc: Doc = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"Polos Serverless: event-triggered durable workflows (app: {app_module})",
        "Parameters": _parameters(),
        # CloudFormation has no arithmetic: the receive count behind each MaxAttempts value, looked up.
        "Mappings": {RECEIVE_LIMITS: {str(n): {"MaxReceiveCount": receive_limit(n)} for n in _ATTEMPTS}},
        "Conditions": _conditions(),
        "Globals": _globals(model, app_module),
        "Resources": _resources(model, names),
        "Outputs": _outputs(model, names),
    }
    _check_quotas(doc, model)
    _check_policy_sizes(doc, model, names)
    return doc


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with no anchors/aliases (CloudFormation tools expect plain documents)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(doc: Doc) -> str:
    header = (
        "# Rendered by `polos template` from the app's workflows: do not edit by hand.\n"
        "# Change the workflows and run `polos template`; `polos template --check` fails if this is stale.\n"
    )
    body = yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True
    )
    return header + body


# Lambda's code directories (/var/task, /opt) are read-only: Python cannot cache the bytecode it compiles
# there, so code shipped without it is compiled from source on every cold start. The layer and the functions
# are therefore built by the Makefiles below (`sam build`'s makefile method: it copies the code directory,
# runs `make build-<LogicalId>` there with ARTIFACTS_DIR set), which compile every module for the runtime's
# interpreter. Unchecked-hash .pyc files are used without looking at the source's mtime or hash, so the
# deployment zip's timestamps do not matter (and nothing edits /var/task or /opt once deployed).
MAKEFILE_BUILD: Doc = {"BuildMethod": "makefile"}
PYTHON = RUNTIME  # the runtime's interpreter, on PATH when building (as for `sam build`'s own python method)
COMPILE = f"{PYTHON} -m compileall -q -f -j 0 --invalidation-mode unchecked-hash"
BYTECODE_TAG = "cpython-" + RUNTIME.removeprefix("python").replace(".", "")  # __pycache__/x.<tag>.pyc
# The code directory's copy, less its local bytecode caches (and the Makefile itself).
COPY = f"tar -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude={BUILD_MAKEFILE}"
LAYER_RECIPE = (
    # The dependencies' wheels for the deployed platform and Python, installed without compiling them.
    f"{PYTHON} -m pip install --quiet --disable-pip-version-check --no-compile --only-binary=:all: "
    f"--platform {WHEEL_PLATFORMS[ARCHITECTURE]} --implementation cp --python-version "
    f'{RUNTIME.removeprefix("python")} --target "$(ARTIFACTS_DIR)/python" -r requirements.txt',
    f'{COPY} polos | tar -xf - -C "$(ARTIFACTS_DIR)/python"',
    f'{COMPILE} "$(ARTIFACTS_DIR)/python"',
)
FUNCTIONS_RECIPE = (f'{COPY} . | tar -xf - -C "$(ARTIFACTS_DIR)"', f'{COMPILE} "$(ARTIFACTS_DIR)"')


def render_makefile(targets: list[str], recipe: tuple[str, ...]) -> str:
    """The build Makefile of one code directory: ``build-<id>`` for each of ``targets``, all alike."""
    names = " ".join(f"build-{target}" for target in targets)
    return (
        "# Rendered by `polos template` (infra/template.py): do not edit by hand. `sam build` runs the\n"
        "# target of each resource built from this directory with ARTIFACTS_DIR set to its output; every\n"
        "# module is compiled for the Lambda runtime, whose code directories are read-only (no bytecode\n"
        "# shipped = every module compiled from source on every cold start).\n"
        f".PHONY: {names}\n"
        f"{names}:\n" + "".join(f"\t{line}\n" for line in recipe)
    )


def render_files(model: AppModel, app_module: str) -> dict[str, str]:
    """Path (relative to the project root) → content, for every file ``polos template`` writes."""
    return {
        TEMPLATE_PATH: to_yaml(render_template(model, app_module)),
        MANIFEST_PATH: model.manifest.to_json(),
        f"{LAYER_DIR}/{BUILD_MAKEFILE}": render_makefile([LAYER_ID], LAYER_RECIPE),
        f"{FUNCTIONS_DIR}/{BUILD_MAKEFILE}": render_makefile(
            [spec.logical_id for spec in model.functions], FUNCTIONS_RECIPE
        ),
    }


def queued_workflows(template_text: str) -> set[str]:
    """The workflows that have queues in a rendered template (``template.yaml`` as checked in)."""
    try:
        doc = yaml.safe_load(template_text) if template_text else None
    except yaml.YAMLError:
        return set()
    resources = (doc or {}).get("Resources") or {}
    return {
        tag["Value"]
        for resource in resources.values()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::SQS::Queue"
        for tag in (resource.get("Properties") or {}).get("Tags") or []
        if tag.get("Key") == WORKFLOW_TAG
    }


def retained_queues_notice(root: Path, files: dict[str, str]) -> str | None:
    """What deploying ``files`` leaves behind: the queues of workflows the checked-in template has and the
    rendered one no longer has (they are retained with their messages, never deleted)."""
    path = root / TEMPLATE_PATH
    before = queued_workflows(path.read_text()) if path.is_file() else set()
    removed = sorted(before - queued_workflows(files[TEMPLATE_PATH]))
    if not removed:
        return None
    names = ", ".join(f"<QueueNamePrefix>{wf} and <QueueNamePrefix>{wf}-dlq" for wf in removed)
    return (
        f"workflow(s) {', '.join(removed)} removed: deploying keeps their queues ({names}) and any messages "
        "in them (DeletionPolicy Retain), but nothing consumes them any more. Let them drain first (deploy "
        "the removal once they are empty), or read or move the messages yourself, then delete the queues "
        "(aws sqs delete-queue); adding a workflow of the same id again needs its old queues deleted first."
    )


def stale_diffs(root: Path, files: dict[str, str]) -> list[str]:
    """A unified diff for each file under ``root`` whose content differs from its rendering."""
    diffs = []
    for rel, rendered in files.items():
        path = root / rel
        current = path.read_text() if path.is_file() else ""
        if current != rendered:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        rendered.splitlines(keepends=True),
                        fromfile=f"{rel} (checked in)" if path.is_file() else f"{rel} (missing)",
                        tofile=f"{rel} (rendered)",
                    )
                )
            )
    return diffs


def write_files(root: Path, files: dict[str, str]) -> list[str]:
    """Write the files that changed; returns their relative paths."""
    changed = []
    for rel, rendered in files.items():
        path = root / rel
        if not path.is_file() or path.read_text() != rendered:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered)
            changed.append(rel)
    return changed

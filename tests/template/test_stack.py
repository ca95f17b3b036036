"""The rendered template, proven offline: SAM translation, cfn-lint, and the stack created in moto.

moto's CloudFormation creates the SQS, DynamoDB, Lambda (functions, layer, event source mappings), IAM and
Logs resources; it skips the ``AWS::ApiGatewayV2::*`` resources and ignores a table's TTL and point-in-time
recovery settings, so those are asserted on the translated template. The event source mappings are kept
for this test only: moto would invoke the worker for a message, and none is ever sent.
"""

from __future__ import annotations

import ast
import io
import json
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import lint
from moto import mock_aws
from polos import BatchEventPayload, EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.aws.attempts import receive_limit
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from infra.model import (
    DEAD_LETTER_ACTIONS,
    QUEUE_NAME_PREFIX_MAX,
    RUNS_TABLE,
    TABLES,
    TTL_ATTRIBUTE,
    AppModel,
    build_model,
)
from infra.template import TEMPLATE_PATH, XRAY_POLICY, render_template, to_yaml

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BUCKET = "polos-test-artifacts"
PREFIX = "polos-tests-"  # the longest prefix the template allows
MAX_ATTEMPTS = 3  # not the default, so the test sees the parameter reach the queues and the worker
OWN_MAX_ATTEMPTS = 7  # a workflow's own max_attempts sizes its queue, whatever the parameter says
ROUTES = {
    ("post", "/api/v1/events/publish"),
    ("get", "/api/v1/events"),
    ("post", "/api/v1/workflows/{workflow_id}/run"),
    ("get", "/api/v1/runs/{run_id}"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/executions/{id}"),
    ("get", "/api/v1/workflows"),
    ("get", "/api/v1/queues/{name}"),
    ("get", "/api/v1/workflows/{workflow_id}/dead-letters"),
    ("post", "/api/v1/workflows/{workflow_id}/dead-letters/redrive"),
}
# The dashboard's static files: no authorizer (they hold no data; the page sends the key with its API calls).
PUBLIC_ROUTES = {("get", "/ui"), ("get", "/ui/{asset}")}
# cfn-lint findings ignored (rule id → reason). Errors and warnings are checked; none is ignored today.
IGNORED_LINT_RULES: dict[str, str] = {}
assert len(PREFIX) == QUEUE_NAME_PREFIX_MAX


@workflow(id="tpl-single", trigger_on_event="tpl/one")
async def tpl_single(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


@workflow(id="tpl_biggest_batch", trigger_on_event="tpl/many", batch_size=10_000, batch_timeout_seconds=300)
async def tpl_biggest_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    return None


@workflow(id="tpl-unwindowed-batch", trigger_on_event="tpl/many", batch_size=5)
async def tpl_unwindowed_batch(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    return None


@workflow(
    id="tpl-zero-window",
    trigger_on_event="tpl/zero",
    batch_size=3,
    batch_timeout_seconds=0,
    max_attempts=OWN_MAX_ATTEMPTS,
)
async def tpl_zero_window(ctx: WorkflowContext, payload: BatchEventPayload) -> None:
    return None


@workflow(id="tpl-invoked-" + "x" * 52)  # the longest id: prefix + id + "-dlq" is SQS's 80 characters
async def tpl_invoked(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
    return None


APP = App(
    "template-test", [tpl_single, tpl_biggest_batch, tpl_unwindowed_batch, tpl_zero_window, tpl_invoked]
)
MODEL = build_model(APP)


def no_managed_policy_lookup() -> dict[str, str]:
    """The template names no managed policy by name, so the translator must never ask IAM for their ARNs."""
    raise AssertionError("the SAM translator looked up a managed policy by name")


def translate(text: str) -> dict[str, Any]:
    """SAM → CloudFormation offline (no AWS call), with local code directories rewritten to S3 objects."""
    doc = yaml.safe_load(text)
    doc["Globals"]["Function"]["CodeUri"] = {"Bucket": BUCKET, "Key": "functions.zip"}
    doc["Resources"]["PolosLayer"]["Properties"]["ContentUri"] = {"Bucket": BUCKET, "Key": "shared.zip"}
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated: dict[str, Any] = translator.translate(
        doc, {}, get_managed_policy_map=no_managed_policy_lookup
    )
    return translated


def lint_findings(text: str) -> list[str]:
    return [
        f"{match.rule.id} {match.message} (line {match.linenumber})"
        for match in lint(text, regions=[REGION])
        if match.rule.id not in IGNORED_LINT_RULES
    ]


@pytest.fixture(scope="module")
def templates() -> dict[str, str]:
    """The checked-in template of the example app and the template of this module's app."""
    return {
        "example": (ROOT / TEMPLATE_PATH).read_text(),
        "test-app": to_yaml(render_template(MODEL, "tests")),
    }


@pytest.fixture(scope="module")
def translated(templates: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: translate(text) for name, text in templates.items()}


def test_raw_template_lints_clean(templates: dict[str, str]) -> None:
    assert lint_findings(templates["example"]) == []


@pytest.mark.parametrize("name", ["example", "test-app"])
def test_translated_template_lints_clean(translated: dict[str, dict[str, Any]], name: str) -> None:
    assert lint_findings(json.dumps(translated[name], indent=1)) == []


def _resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in doc["Resources"].items() if res["Type"] == kind}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("name", ["example", "test-app"])
def test_no_iam_statement_has_a_star_resource(translated: dict[str, dict[str, Any]], name: str) -> None:
    doc = translated[name]
    roles = _resources(doc, "AWS::IAM::Role")
    # none from SAM; EventBridge Scheduler's own (the timers function each minute, schedules' firings)
    assert set(roles) == {"ApiFunctionRole", "WorkerFunctionRole", "TimersFunctionRole", "SchedulerRole"}
    assert not _resources(doc, "AWS::IAM::Policy") and not _resources(doc, "AWS::IAM::ManagedPolicy")
    for role in roles.values():
        for statement in _statements(role):
            assert statement["Effect"] == "Allow" and "NotResource" not in statement
            for resource in _listed(statement["Resource"]):
                assert resource != "*" and "*" not in json.dumps(resource), statement  # no wildcard at all
                assert isinstance(resource, dict), statement  # every resource is one of this stack's
    for name_, role in roles.items():
        # X-Ray accepts no resource but "*": that one grant is AWS's managed policy, not a statement here.
        expected = [] if name_ == "SchedulerRole" else [{"Fn::Sub": XRAY_POLICY}]
        assert role.get("ManagedPolicyArns", []) == expected


def test_http_api_routes_no_authorizer_and_no_cors(translated: dict[str, dict[str, Any]]) -> None:
    """Every route goes to the API function, which checks the key of every request: API Gateway neither
    answers a request itself (a missing header included) nor caches a verdict."""
    doc = translated["example"]
    (api,) = _resources(doc, "AWS::ApiGatewayV2::Api").values()
    body = api["Body"]
    routes = {(method, path) for path, methods in body["paths"].items() for method in methods}
    assert routes == ROUTES | PUBLIC_ROUTES | {("x-amazon-apigateway-any-method", "$default")}
    for methods in body["paths"].values():
        for operation in methods.values():
            assert "security" not in operation
            assert "ApiFunction.Arn" in operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"
    assert "securitySchemes" not in body.get("components", {})
    assert not _resources(doc, "AWS::ApiGatewayV2::Authorizer")
    assert "x-amazon-apigateway-cors" not in body and "CorsConfiguration" not in api
    permissions = _resources(doc, "AWS::Lambda::Permission").values()
    assert {json.dumps(p["FunctionName"]) for p in permissions} == {json.dumps({"Ref": "ApiFunction"})}


@pytest.mark.parametrize("name", ["example", "test-app"])
def test_queues_and_dead_letter_queues_are_retained_with_their_messages(
    translated: dict[str, dict[str, Any]], name: str
) -> None:
    queues = {k: r for k, r in translated[name]["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    assert len(queues) == 2 * (12 if name == "example" else len(MODEL.queues))
    for queue in queues.values():
        assert queue["DeletionPolicy"] == queue["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("name", ["example", "test-app"])
def test_tables_keep_their_data_with_ttl_and_recovery(
    translated: dict[str, dict[str, Any]], name: str
) -> None:
    tables = {
        key: res
        for key, res in translated[name]["Resources"].items()
        if res["Type"] == "AWS::DynamoDB::Table"
    }
    assert set(tables) == {spec.logical_id for spec in TABLES}
    for table in tables.values():
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
        properties = table["Properties"]
        assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "SSESpecification" not in properties  # encrypted with the AWS owned key: no KMS charge
        assert properties["BillingMode"] == "PAY_PER_REQUEST"


# --- the stack in moto ------------------------------------------------------------------------------------


class Stack:
    """The created stack: physical ids by logical id, and boto3 clients on moto."""

    def __init__(self, translated: dict[str, Any]) -> None:
        self.cfn = boto3.client("cloudformation", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.lam = boto3.client("lambda", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("placeholder.py", "")
        for key in ("functions.zip", "shared.zip"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=archive.getvalue())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*AWS::ApiGatewayV2.*")  # see the module docstring
            self.cfn.create_stack(
                StackName="polos",
                TemplateBody=json.dumps(translated),
                Parameters=[
                    {"ParameterKey": "QueueNamePrefix", "ParameterValue": PREFIX},
                    {"ParameterKey": "MaxAttempts", "ParameterValue": str(MAX_ATTEMPTS)},
                ],
                Capabilities=["CAPABILITY_IAM"],
            )
            described = self.cfn.describe_stacks(StackName="polos")["Stacks"][0]
            resources = self.cfn.describe_stack_resources(StackName="polos")["StackResources"]
        assert described["StackStatus"] == "CREATE_COMPLETE"
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        self.ids = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources if "LogicalResourceId" in r
        }

    def function(self, logical_id: str) -> dict[str, Any]:
        config: dict[str, Any] = self.lam.get_function_configuration(FunctionName=self.ids[logical_id])
        return config

    def queue(self, name: str) -> dict[str, str]:
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"] | {
            "Url": url
        }


@pytest.fixture(scope="module")
def stack(translated: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with mock_aws():
            yield Stack(translated["test-app"])


def test_one_queue_and_dead_letter_queue_per_workflow(stack: Stack) -> None:
    worker_timeout = stack.function("WorkerFunction")["Timeout"]
    urls = stack.sqs.list_queues()["QueueUrls"]
    assert len(urls) == 2 * len(MODEL.queues)
    for queue in MODEL.queues:
        dlq = stack.queue(queue.dlq_name(PREFIX))
        main = stack.queue(queue.queue_name(PREFIX))
        assert json.loads(main["RedrivePolicy"]) == {
            "deadLetterTargetArn": dlq["QueueArn"],
            "maxReceiveCount": receive_limit(queue.max_attempts or MAX_ATTEMPTS),
        }
        assert int(main["VisibilityTimeout"]) >= 6 * worker_timeout + (queue.batching_window_seconds or 0)
        assert main["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
        assert int(dlq["MessageRetentionPeriod"]) > int(main["MessageRetentionPeriod"])
        assert "RedrivePolicy" not in dlq
    assert len(max(urls, key=len).rsplit("/", 1)[1]) == 80


def test_queue_urls_follow_the_prefix_the_functions_read(stack: Stack) -> None:
    env = stack.function("ApiFunction")["Environment"]["Variables"]
    assert env[settings.ENV_QUEUE_URL_PREFIX] == stack.outputs["QueueUrlPrefix"]
    for queue in MODEL.queues:
        url = stack.queue(queue.queue_name(PREFIX))["Url"]
        assert env[settings.ENV_QUEUE_URL_PREFIX] + queue.workflow_id == url  # settings.queue_url's contract
        assert url in stack.outputs.values()
        assert stack.queue(queue.dlq_name(PREFIX))["Url"] in stack.outputs.values()


def test_event_source_mappings_carry_each_workflows_batching(stack: Stack) -> None:
    worker_arn = stack.function("WorkerFunction")["FunctionArn"]
    mappings = {m["EventSourceArn"]: m for m in stack.lam.list_event_source_mappings()["EventSourceMappings"]}
    assert len(mappings) == len(MODEL.queues)
    expected = {
        "tpl-single": (10, None),
        "tpl_biggest_batch": (10_000, 300),
        "tpl-unwindowed-batch": (5, None),
        "tpl-zero-window": (3, 0),
        tpl_invoked.id: (10, None),
    }
    for queue in MODEL.queues:
        mapping = mappings[stack.queue(queue.queue_name(PREFIX))["QueueArn"]]
        assert mapping["FunctionArn"] == worker_arn
        assert (mapping["BatchSize"], mapping.get("MaximumBatchingWindowInSeconds")) == expected[
            queue.workflow_id
        ]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_tables_have_their_keys_and_indexes(stack: Stack) -> None:
    for spec in TABLES:
        table = stack.ddb.describe_table(TableName=stack.ids[spec.logical_id])["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
        assert keys == ({"pk": "HASH", "sk": "RANGE"} if spec.range_key else {"pk": "HASH"})
        assert {
            a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]
        } == dict.fromkeys(spec.attributes, "S")
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {
            i["IndexName"]: ([k["AttributeName"] for k in i["KeySchema"]], i["Projection"]["ProjectionType"])
            for i in table.get("GlobalSecondaryIndexes", [])
        }
        assert indexes == {i.name: ([i.hash_key, i.range_key], i.projection) for i in spec.indexes}
    assert RUNS_TABLE.indexes  # the one index the code queries (runs by workflow)


def test_functions_get_the_runtime_layer_and_settings(stack: Stack, translated: dict[str, Any]) -> None:
    tables = {spec.env_var: stack.ids[spec.logical_id] for spec in TABLES}
    for spec in MODEL.functions:
        config = stack.function(spec.logical_id)
        assert (config["Runtime"], config["Handler"]) == ("python3.12", spec.handler)
        properties = translated["test-app"]["Resources"][spec.logical_id]["Properties"]
        # moto's CloudFormation drops the architecture and the tracing mode
        assert properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}
        assert properties["Layers"] == [
            {"Ref": next(k for k in translated["test-app"]["Resources"] if k.startswith("PolosLayer"))}
        ]
        assert config["Timeout"] == spec.timeout_seconds and config["MemorySize"] == spec.memory_mb
        env = config["Environment"]["Variables"]
        assert {name: env[name] for name in tables} == tables
        assert env["POWERTOOLS_SERVICE_NAME"] == "polos"
        assert str(env[settings.ENV_MAX_ATTEMPTS]) == str(MAX_ATTEMPTS)
        assert env[settings.ENV_LEASE_SECONDS] == str(stack.function("WorkerFunction")["Timeout"])


def _grants(stack: Stack, role_logical_id: str) -> dict[str, set[str]]:
    """Resource → actions of a created role's inline policy (moto returns the document as a Python repr)."""
    name = stack.ids[role_logical_id]
    assert stack.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []  # moto drops AWS's
    grants: dict[str, set[str]] = {}
    for policy in stack.iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = stack.iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        document = document if isinstance(document, dict) else ast.literal_eval(document)
        for statement in document["Statement"]:
            for resource in _listed(statement["Resource"]):
                grants.setdefault(resource, set()).update(_listed(statement["Action"]))
    return grants


def _expected_grants(stack: Stack, model: AppModel, function: str) -> dict[str, set[str]]:
    spec = next(f for f in model.functions if f.logical_id == function)
    arn = f"arn:aws:{{}}:{REGION}:123456789012:{{}}"
    grants = {
        arn.format("logs", f"log-group:{stack.ids[function + 'LogGroup']}"): {
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        }
    }
    for access in spec.tables:
        table = arn.format("dynamodb", f"table/{stack.ids[access.table.logical_id]}")
        grants[table] = set(access.actions)
        for index in access.table.indexes if access.index_actions else ():
            grants[f"{table}/index/{index.name}"] = set(access.index_actions)
    for queue in MODEL.queues if spec.queue_actions else ():
        grants[arn.format("sqs", queue.queue_name(PREFIX))] = set(spec.queue_actions)
    for queue in MODEL.queues if spec.manages_dead_letters else ():
        grants[arn.format("sqs", queue.dlq_name(PREFIX))] = set(DEAD_LETTER_ACTIONS)
    for queue in MODEL.queues if spec.sends_dead_letters else ():  # a spent run's message, by the worker
        grants.setdefault(arn.format("sqs", queue.dlq_name(PREFIX)), set()).add("sqs:SendMessage")
    return grants


@pytest.mark.parametrize("function", ["ApiFunction", "WorkerFunction"])
def test_each_function_may_touch_only_its_own_tables_and_queues(stack: Stack, function: str) -> None:
    assert _grants(stack, f"{function}Role") == _expected_grants(stack, MODEL, function)
    assert stack.function(function)["Role"].endswith(stack.ids[f"{function}Role"])


def test_least_privilege_by_function() -> None:
    """What each function may do, spelled out (the model above is what the stack test checks against)."""
    queue_actions = {f.logical_id: set(f.queue_actions) for f in MODEL.functions}
    assert queue_actions == {
        "ApiFunction": {"sqs:SendMessage"},
        "TimersFunction": {"sqs:SendMessage"},
        "WorkerFunction": {
            "sqs:SendMessage",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        },
    }
    access = {f.logical_id: {a.table.logical_id: set(a.actions) for a in f.tables} for f in MODEL.functions}
    assert access["ApiFunction"]["ApiKeysTable"] == {"dynamodb:GetItem"}  # the key check, nothing more
    assert set(access["ApiFunction"]) == {"ApiKeysTable", "EventsTable", "IdempotencyTable", "RunsTable"}
    assert set(access["WorkerFunction"]) == {"EventsTable", "RunsTable"}
    assert all(
        "dynamodb:Scan" not in actions for by_table in access.values() for actions in by_table.values()
    )

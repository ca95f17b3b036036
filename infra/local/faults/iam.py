"""The ``iam`` fault: each function's AWS calls are authorised by its own role, as ``template.yaml`` has it.

moto's IAM enforcement matches actions against resource ``*`` only, so it cannot judge the template's
grants, which name each table, index and queue by ARN. Here a botocore ``before-parameter-build`` hook on
the local stack's clients turns every call made inside a function (``functions.current_function``) into
the (action, resource ARN) pairs IAM checks (:func:`iam_requests`: a transaction item by item, a batch per
table) and evaluates them against that function's role: its inline policies in the rendered template, the
intrinsics (``Fn::GetAtt``, ``Fn::Sub``, ``Ref``) resolved to the local stack's ARNs. A call that no
``Allow`` statement covers raises what AWS answers, a ``ClientError`` ``AccessDeniedException``
(``AccessDenied`` for SQS), before anything reaches moto. Calls made outside a function (the stack's
set-up, the event source mappings, a test's own reads) are the operator's or Lambda's and pass.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from infra.local.aws import ACCOUNT_ID, REGION
from infra.local.functions import current_function
from infra.local.resources import schedule_group_name, scheduler_role_arn
from infra.model import AppModel
from infra.template import logical_name, render_template

logger = logging.getLogger("polos.dev")

PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
# The IAM action of each item kind of a transaction (there is no IAM action for the transaction itself).
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
# What a refused call answers with, per service (SQS's JSON protocol keeps its query-API error codes).
_DENIED_CODES = {"dynamodb": "AccessDeniedException", "sqs": "AccessDenied"}

_HOOK = "before-parameter-build.*.*"  # the call's own parameters, before anything is sent
Request = tuple[str, str]  # (IAM action, resource ARN)


class PolicyError(ValueError):
    """The template's role could not be read as policy statements (the message says what)."""


def iam_requests(
    service: str, operation: str, params: Mapping[str, Any], arn: Callable[[str], str]
) -> list[Request]:
    """The (action, resource) pairs IAM authorises for one call; ``arn`` turns a table name or queue URL
    into its ARN. SQS batch calls are authorised as their single action, DynamoDB transactions item by
    item, DynamoDB batches per table, a call on an index as the index's ARN."""
    if service == "scheduler":
        if operation == "ListSchedules":  # IAM grants listing on "*" only
            return [("scheduler:ListSchedules", "*")]
        group = params.get("GroupName") or "default"
        schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/{group}/{params.get('Name', '*')}"
        requests = [(f"scheduler:{operation}", schedule)]
        if "Target" in params:  # making a schedule run as a role passes that role (iam:PassRole)
            requests.append(("iam:PassRole", str(params["Target"]["RoleArn"])))
        return requests
    if service == "sqs":
        action = operation.removesuffix("Batch")
        # A call naming no queue URL (ListQueues, GetQueueUrl) is judged on "*", which no role here grants.
        return [(f"sqs:{action}", arn(params["QueueUrl"]) if "QueueUrl" in params else "*")]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", arn(body["TableName"]))
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", arn(table)) for table in params["RequestItems"]]
    if "TableName" not in params:  # ListTables and the like: no resource but "*"
        return [(f"dynamodb:{operation}", "*")]
    resource = arn(params["TableName"])
    if params.get("IndexName"):
        resource += f"/index/{params['IndexName']}"
    return [(f"dynamodb:{operation}", resource)]


def resource_arn(name_or_url: str) -> str:
    """The ARN of a table name (or ``table/index/...``) or a queue URL, in the local account and region."""
    if name_or_url.startswith(("http://", "https://")):
        account, _, queue = urlparse(name_or_url).path.strip("/").partition("/")
        return f"arn:aws:sqs:{REGION}:{account}:{queue}"
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name_or_url}"


@dataclass(frozen=True)
class Statement:
    """An ``Allow`` statement, its actions and resources as IAM's wildcard patterns."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def allows(self, action: str, resource: str) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in self.actions) and any(
            fnmatch.fnmatchcase(resource, pattern) for pattern in self.resources
        )


class Role:
    """A function's role: the ``Allow`` statements of its inline policies."""

    def __init__(self, name: str, statements: Iterable[Statement]) -> None:
        self.name = name
        self.statements = list(statements)

    def allows(self, action: str, resource: str) -> bool:
        return any(statement.allows(action, resource) for statement in self.statements)

    def without(self, action: str) -> Role:
        """This role with ``action`` taken out of every statement (for tests: a missing grant)."""
        return Role(
            self.name,
            [Statement(tuple(a for a in s.actions if a != action), s.resources) for s in self.statements],
        )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resolve(node: Any, values: Mapping[str, str]) -> Any:
    """``node`` with CloudFormation's ``Ref``, ``Fn::GetAtt`` (``X.Arn``) and ``Fn::Sub`` replaced by
    ``values`` (logical ids, ``X.Arn``, parameters and pseudo parameters); an unknown name is a
    :class:`PolicyError` naming it."""

    def value(name: str) -> str:
        if name not in values:
            raise PolicyError(f"the template names {name!r}, which the local stack does not have")
        return values[name]

    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return value(node["Ref"])
    if set(node) == {"Fn::GetAtt"}:
        logical_id, attribute = node["Fn::GetAtt"]
        return value(f"{logical_id}.{attribute}")
    if set(node) == {"Fn::Sub"}:
        return _SUB_VARIABLE.sub(lambda match: value(match[1]), node["Fn::Sub"])
    return {key: resolve(item, values) for key, item in node.items()}


def roles_of(doc: Mapping[str, Any], model: AppModel, values: Mapping[str, str]) -> dict[str, Role]:
    """Function logical id → its role, read from the rendered template ``doc``."""
    roles: dict[str, Role] = {}
    resources = doc["Resources"]
    for spec in model.functions:
        role_id = f"{spec.logical_id}Role"
        policies = resolve(resources[role_id]["Properties"].get("Policies", []), values)
        statements = [
            Statement(tuple(_listed(s["Action"])), tuple(_listed(s["Resource"])))
            for policy in policies
            for s in policy["PolicyDocument"]["Statement"]
            if s.get("Effect") == "Allow"
        ]
        roles[spec.logical_id] = Role(role_id, statements)
    return roles


def local_values(model: AppModel, tables: Mapping[str, str], queue_prefix: str) -> dict[str, str]:
    """What the template's intrinsics resolve to in the local stack: each table's and queue's ARN (by the
    names the stack created them with: ``tables`` logical id → name, queues ``queue_prefix`` + id), each
    function's log group ARN, the parameters the roles use and the pseudo parameters."""
    values = {
        **PSEUDO_PARAMETERS,
        "QueueNamePrefix": queue_prefix,
        "ScheduleGroup": schedule_group_name(queue_prefix),
        "SchedulerRole.Arn": scheduler_role_arn(queue_prefix),
    }
    for spec in model.tables:
        values[f"{spec.logical_id}.Arn"] = resource_arn(tables[spec.logical_id])
    for queue in model.queues:
        name = logical_name(queue.workflow_id)
        values[f"Queue{name}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue.queue_name(queue_prefix)}"
        values[f"DeadLetterQueue{name}.Arn"] = (
            f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue.dlq_name(queue_prefix)}"
        )
    for function in model.functions:
        values[f"{function.logical_id}LogGroup.Arn"] = (
            f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/{function.logical_id}:*"
        )
    return values


def local_roles(model: AppModel, tables: Mapping[str, str], queue_prefix: str) -> dict[str, Role]:
    """Each function's role as ``template.yaml`` renders it for ``model``, resolved in the local stack."""
    doc = render_template(model, "local")
    return roles_of(doc, model, local_values(model, tables, queue_prefix))


class IamEnforcement:
    """The hook: refuses what a function's role does not allow, and keeps what it refused."""

    def __init__(self, roles: Mapping[str, Role], report: Callable[[str, str], None] | None = None) -> None:
        self.roles = dict(roles)
        self._report = report  # each refusal, to the stack's fault counts (``Injector.injected``)
        self.refused: list[tuple[str, str, str]] = []  # (function, action, resource)
        self._clients: list[Any] = []

    def check(self, event_name: str, params: Mapping[str, Any], **kwargs: Any) -> None:
        function = current_function.get()
        if function is None:
            return
        _, service, operation = event_name.split(".")
        role = self.roles.get(function)
        for action, resource in iam_requests(service, operation, params, resource_arn):
            if role is not None and role.allows(action, resource):
                continue
            self.refused.append((function, action, resource))
            logger.debug("iam fault: %s refused %s on %s", function, action, resource)
            if self._report is not None:
                self._report("iam", f"{function} {action} on {resource}")
            who = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{function}Role/{function}"
            message = (
                f"User: {who} is not authorized to perform: {action} on resource: {resource} "
                f"because no identity-based policy allows the {action} action"
            )
            error = {"Code": _DENIED_CODES.get(service, "AccessDeniedException"), "Message": message}
            answer: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(answer, operation)

    def install(self, clients: Iterable[Any]) -> None:
        for client in clients:
            client.meta.events.register(_HOOK, self.check)
            self._clients.append(client)

    def uninstall(self) -> None:
        for client in self._clients:
            client.meta.events.unregister(_HOOK, self.check)
        self._clients.clear()


def install_iam_enforcement(
    model: AppModel,
    tables: Mapping[str, str],
    queue_prefix: str,
    clients: Iterable[Any],
    report: Callable[[str, str], None] | None = None,
) -> IamEnforcement:
    """Enforce each function's template role (:func:`local_roles`) on ``clients`` until ``uninstall()``;
    each refusal goes to ``report(fault, detail)`` too."""
    enforcement = IamEnforcement(local_roles(model, tables, queue_prefix), report)
    enforcement.install(clients)
    return enforcement

"""Cached update expression trees: UpdateItem answers and refuses exactly as moto does, every time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local import moto_expressions

EXPRESSIONS = [
    ("SET a = :one, b = if_not_exists(b, :one) ADD n :one", {}),
    ("SET #s = :one REMOVE gone, other", {"#s": "status"}),
    ("SET a = :one SET b = :one", {}),  # two SET clauses: refused
    ("ADD n :one ADD m :one", {}),  # two ADD clauses: refused
    ("REMOVE a REMOVE b", {}),  # two REMOVE clauses: refused
    ("SET a = :one, a = :one", {}),  # overlapping paths: refused
    ("SET pk = :one", {}),  # a key attribute: refused
    ("SET list[0] = :one", {}),  # not a list yet: refused by the item's check
    ("SET a = :missing", {}),  # an undefined value: refused
    ("SET = :one", {}),  # does not parse
    ("ADD n :one", {}),
]


@pytest.fixture
def patch_off() -> Iterator[None]:
    was = moto_expressions.installed()
    moto_expressions.uninstall()
    yield
    (moto_expressions.install if was else moto_expressions.uninstall)()


def _answers(client: Any) -> list[Any]:
    """Every expression applied twice to fresh and existing items: the answers, errors and final items."""
    answers: list[Any] = []
    for round_ in range(2):
        for i, (expression, names) in enumerate(EXPRESSIONS):
            key = {"pk": {"S": f"item-{i % 3}"}}
            params: dict[str, Any] = {
                "TableName": "t",
                "Key": key,
                "UpdateExpression": expression,
                "ExpressionAttributeValues": {":one": {"N": "1"}},
                "ReturnValues": "ALL_NEW",
            }
            if names:
                params["ExpressionAttributeNames"] = names
            try:
                answer = client.update_item(**params)
                answers.append((round_, expression, answer["Attributes"]))
            except ClientError as exc:
                answers.append(
                    (round_, expression, exc.response["Error"]["Code"], exc.response["Error"]["Message"])
                )
    answers.append(sorted(str(item) for item in client.scan(TableName="t")["Items"]))
    return answers


def _fresh_table(client: Any) -> None:
    if "t" in client.list_tables()["TableNames"]:
        client.delete_table(TableName="t")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_update_item_answers_like_moto(aws: None, patch_off: None) -> None:
    client = boto3.client("dynamodb")
    _fresh_table(client)
    expected = _answers(client)
    moto_expressions.install()
    _fresh_table(client)
    assert _answers(client) == expected
    refused = [answer for answer in expected[:-1] if len(answer) == 4]
    first, second = ([a[1:] for a in refused if a[0] == round_] for round_ in (0, 1))
    assert first == second and len(first) >= 7  # refused again on the second round, from the kept tree


def test_a_refused_expression_is_never_remembered_as_counted(aws: None, patch_off: None) -> None:
    moto_expressions.install()
    client = boto3.client("dynamodb")
    _fresh_table(client)
    for _ in range(3):
        with pytest.raises(ClientError, match="SET\" section can only be used once"):
            client.update_item(
                TableName="t",
                Key={"pk": {"S": "x"}},
                UpdateExpression="SET a = :one SET b = :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

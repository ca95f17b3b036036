"""Cached update expression trees: UpdateItem answers and refuses exactly as moto does, every time."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local import moto_expressions
from tests.helpers.moto_patches import fresh_table, patch_off_fixture

LEASE_LIKE = (
    "SET wf = :one, #s = :one, created = if_not_exists(created, :one), "
    "c = if_not_exists(c, :one) + :one, l = list_append(if_not_exists(l, :list), :list) ADD attempts :one"
)
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
    # The journal's lease's shapes: functions, nested paths, arithmetic, lists (copied from the kept tree).
    (LEASE_LIKE, {"#s": "status"}),
    ("SET m = :map, m.inner.deep = :one, l[1] = :one REMOVE m.gone", {}),
    ("SET n2 = n2 + :one", {}),  # refused while n2 does not exist
    ("SET l[5] = :one DELETE strs :strs", {}),
    # One text, names that make its paths overlap or not: the overlap check depends on both.
    ("SET #a = :one, #b = :one", {"#a": "x", "#b": "y"}),
    ("SET #a = :one, #b = :one", {"#a": "x", "#b": "x"}),  # refused: one path twice
    ("SET #a = :one, #b = :one", {"#a": "x", "#b": "y"}),
    ("SET #a.b = :one, #c = :one", {"#a": "m", "#c": "m"}),
]
EXTRA_VALUES: dict[str, Any] = {
    ":list": {"L": [{"N": "1"}]},
    ":map": {"M": {"inner": {"M": {}}}},
    ":strs": {"SS": ["a"]},
}


patch_off = patch_off_fixture(moto_expressions)


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
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    **{name: value for name, value in EXTRA_VALUES.items() if name in expression},
                },
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
    fresh_table(client)


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
        with pytest.raises(ClientError, match='SET" section can only be used once'):
            client.update_item(
                TableName="t",
                Key={"pk": {"S": "x"}},
                UpdateExpression="SET a = :one SET b = :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )


def test_a_kept_tree_is_copied_from_its_pickle_and_stays_as_parsed(
    aws: None, patch_off: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy
    import pickle

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    deep_copied: list[Any] = []

    def watched(value: Any, memo: Any = None) -> Any:
        deep_copied.append(value)
        return copy.deepcopy(value, memo)

    monkeypatch.setattr(validators, "deepcopy", watched)  # the copy moto's validators make
    moto_expressions.install()
    client = boto3.client("dynamodb")
    _fresh_table(client)
    expression = LEASE_LIKE
    kept = UpdateExpressionParser.make(expression)
    parsed = pickle.dumps(kept)
    for i in range(3):
        client.update_item(
            TableName="t",
            Key={"pk": {"S": f"k{i % 2}"}},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":list": EXTRA_VALUES[":list"]},
        )
    assert UpdateExpressionParser.make(expression) is kept
    assert not [value for value in deep_copied if value is kept]  # moto alone: one deepcopy per validation
    assert pickle.dumps(kept) == parsed  # the validations changed their copies only
    item = client.get_item(TableName="t", Key={"pk": {"S": "k0"}})["Item"]
    assert item["attempts"] == {"N": "2"} and item["l"] == {"L": [{"N": "1"}] * 3}


def _lease_like_update(client: Any, key: str) -> None:
    client.update_item(
        TableName="t",
        Key={"pk": {"S": key}},
        UpdateExpression=LEASE_LIKE,
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":list": EXTRA_VALUES[":list"]},
    )


def test_passes_over_a_kept_tree_are_not_repeated_per_node(
    aws: None, patch_off: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per UpdateItem of a known expression: no overlap check again, and each pass's node classes built
    once, not at every node."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import OverlappingPathsValidator

    calls = {"map": 0, "overlap": 0}

    def counting(name: str, original: Any) -> Any:
        def counted(self: Any, *args: Any) -> Any:
            calls[name] += 1
            return original(self, *args)

        return counted

    for cls in DepthFirstTraverser.__subclasses__():  # moto's validation passes
        if "_processing_map" in cls.__dict__:
            monkeypatch.setattr(cls, "_processing_map", counting("map", cls._processing_map))
    monkeypatch.setattr(
        OverlappingPathsValidator,
        "check_for_overlapping_paths",
        counting("overlap", OverlappingPathsValidator.check_for_overlapping_paths),
    )
    client = boto3.client("dynamodb")
    _fresh_table(client)
    _lease_like_update(client, "a")
    unpatched = dict(calls)
    moto_expressions.install()
    _lease_like_update(client, "a")  # remembered as passed
    calls.update(map=0, overlap=0)
    _lease_like_update(client, "a")
    assert calls["overlap"] == 0 and unpatched["overlap"] > 5
    assert calls["map"] * 3 < unpatched["map"], (calls, unpatched)

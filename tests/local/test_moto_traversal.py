"""Kept type checks in moto's validation passes: UpdateItem answers and refuses exactly as moto does, on a
randomized corpus of update expressions (every clause, functions, arithmetic, nested paths, malformed)."""

from __future__ import annotations

import random
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.local import moto_traversal
from tests.helpers.moto_patches import fresh_table, patch_off_fixture

SEED = 15
EXPRESSIONS = 150
PATHS = ["a", "b", "#n", "m.inner", "m.#n", "l[0]", "l[3]", "n", "s", "c", "pk", "m.inner.deep", "#n[1]"]
VALUES = {
    ":one": {"N": "1"},
    ":list": {"L": [{"N": "2"}]},
    ":map": {"M": {"inner": {"M": {}}}},
    ":strs": {"SS": ["a", "b"]},
    ":str": {"S": "x"},
}
JUNK = " ()#:,.[]=+-@ab1"


patch_off = patch_off_fixture(moto_traversal)


def _value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(8 if depth < 1 else 3)
    if kind in (0, 2):
        return rng.choice([*VALUES, ":missing"] if rng.random() < 0.1 else [":one", ":str"])
    if kind == 1:
        return rng.choice(PATHS)
    if kind in (3, 6):
        return f"if_not_exists({rng.choice(PATHS)}, {_value(rng, depth + 1)})"
    if kind == 4:
        return f"list_append({_value(rng, depth + 1)}, {_value(rng, depth + 1)})"
    return f"{_value(rng, depth + 1)} {rng.choice('+-')} {_value(rng, depth + 1)}"


def _expression(rng: random.Random) -> str:
    clauses: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        action = rng.choice(["SET", "SET", "SET", "REMOVE", "ADD", "DELETE"])
        count = rng.choice([1, 1, 2, 3])
        if action == "SET":
            parts = [f"{rng.choice(PATHS)} = {_value(rng)}" for _ in range(count)]
        elif action == "REMOVE":
            parts = rng.sample(PATHS, count)
        else:
            parts = [f"{rng.choice(PATHS)} {rng.choice(list(VALUES))}" for _ in range(count)]
        clauses.append(f"{action} {', '.join(parts)}")
    text = " ".join(clauses)
    if rng.random() < 0.1:  # malformed: a character changed, added or dropped
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice(["", rng.choice(JUNK)]) + text[at + rng.randint(0, 1) :]
    return text


def _corpus() -> list[str]:
    rng = random.Random(SEED)
    return [_expression(rng) for _ in range(EXPRESSIONS)]


def _fresh_table(client: Any) -> None:
    fresh_table(
        client,
        {
            "pk": {"S": "k0"},
            "a": {"N": "3"},
            "m": {"M": {"inner": {"M": {"deep": {"N": "1"}}}}},
            "l": {"L": [{"N": "1"}, {"S": "y"}]},
            "s": {"SS": ["a", "c"]},
        },
    )


def _answers(client: Any, texts: list[str]) -> list[Any]:
    """Each expression twice, on an existing item and a new one: the answers, errors and final items."""
    answers: list[Any] = []
    for round_ in range(2):
        _fresh_table(client)
        for i, text in enumerate(texts):
            params: dict[str, Any] = {
                "TableName": "t",
                "Key": {"pk": {"S": f"k{i % 2}"}},
                "UpdateExpression": text,
                "ReturnValues": "ALL_NEW",
            }
            if "#n" in text:
                params["ExpressionAttributeNames"] = {"#n": rng_name(i)}
            if values := {name: value for name, value in VALUES.items() if name in text}:
                params["ExpressionAttributeValues"] = values
            try:
                answers.append((round_, text, client.update_item(**params).get("Attributes")))
            except ClientError as exc:
                answers.append(
                    (round_, text, exc.response["Error"]["Code"], exc.response["Error"]["Message"])
                )
            except Exception as exc:  # what moto raises unanswered (in-process): the same, or not
                answers.append((round_, text, type(exc).__name__, str(exc)))
        answers.append(sorted(str(item) for item in client.scan(TableName="t")["Items"]))
    return answers


def rng_name(i: int) -> str:
    """What ``#n`` stands for: a plain attribute, one the expression may also name, or a key."""
    return ["a", "b", "pk"][i % 3]


def test_update_item_answers_like_moto(aws: None, patch_off: None) -> None:
    client = boto3.client("dynamodb")
    texts = _corpus()
    expected = _answers(client, texts)
    moto_traversal.install()
    assert _answers(client, texts) == expected
    rows = [answer for answer in expected if isinstance(answer, tuple)]
    refused = [row for row in rows if len(row) == 4]
    assert len(refused) >= 20 and len(rows) - len(refused) >= 20  # both answers and errors are compared


def _abstract_checks(client: Any) -> int:
    """How many ``isinstance`` checks against moto's abstract node classes one UpdateItem makes."""
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    asked = 0
    original = type(Node).__instancecheck__

    def watched(cls: Any, instance: Any) -> bool:
        nonlocal asked
        asked += 1
        return original(cls, instance)

    type(Node).__instancecheck__ = watched  # type: ignore[assignment]
    try:
        client.update_item(
            TableName="t",
            Key={"pk": {"S": "k0"}},
            UpdateExpression="SET a = if_not_exists(a, :one) + :one, l = list_append(l, :list)",
            ExpressionAttributeValues={":one": VALUES[":one"], ":list": VALUES[":list"]},
        )
    finally:
        type(Node).__instancecheck__ = original  # type: ignore[method-assign]
    return asked


def test_the_passes_ask_abstract_classes_once_per_node_class(aws: None, patch_off: None) -> None:
    client = boto3.client("dynamodb")
    _fresh_table(client)
    unpatched = _abstract_checks(client)
    moto_traversal.install()
    _abstract_checks(client)  # each node class answered once
    patched = _abstract_checks(client)
    assert patched * 3 < unpatched * 2, (patched, unpatched)  # the rest: moto outside the passes

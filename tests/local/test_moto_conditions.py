"""Kept condition tokens: moto's lexer, conditional writes and filters answer and refuse exactly as moto's do,
on a randomized corpus of condition texts (valid, malformed, with names and values defined or not)."""

from __future__ import annotations

import random
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.local import moto_conditions
from tests.helpers.moto_patches import fresh_table, patch_off_fixture

SEED = 15
TEXTS = 160
PATHS = ["a", "b", "#n", "#m", "m.inner", "#n.x", "l[0]", "l[1].y", "pk", "size", "and", "a-b", "_u"]
OPERANDS = [*PATHS, ":v", ":w", ":s", ":missing", "size(l)", "size(#n)"]
COMPARATORS = ["=", "<>", "<", "<=", ">", ">=", "==", "=<"]
FUNCTIONS = [
    "attribute_exists({p})",
    "attribute_not_exists({p})",
    "attribute_type({p}, :t)",
    "begins_with({p}, :s)",
    "contains({p}, :s)",
    "nosuch({p})",
]
JUNK = " ()#:,.[]=<>@!ab1-_"
NAMES = {"#n": "a", "#m": "m"}
VALUES: dict[str, Any] = {":v": {"N": "1"}, ":w": {"N": "5"}, ":s": {"S": "x"}, ":t": {"S": "N"}}


patch_off = patch_off_fixture(moto_conditions)


def _condition(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(8 if depth < 3 else 4)
    operand = rng.choice
    if kind in (0, 1):
        return f"{operand(OPERANDS)} {rng.choice(COMPARATORS)} {operand(OPERANDS)}"
    if kind == 2:
        return rng.choice(FUNCTIONS).format(p=operand(PATHS))
    if kind == 3:
        return f"{operand(OPERANDS)} BETWEEN {operand(OPERANDS)} AND {operand(OPERANDS)}"
    if kind == 4:
        return f"{operand(OPERANDS)} IN ({', '.join(rng.sample(OPERANDS, rng.randint(1, 3)))})"
    if kind == 5:
        return f"NOT {_condition(rng, depth + 1)}"
    if kind == 6:
        return (
            f"({_condition(rng, depth + 1)} {rng.choice(['AND', 'OR', 'and'])} {_condition(rng, depth + 1)})"
        )
    return f"{_condition(rng, depth + 1)} {rng.choice(['AND', 'OR'])} {_condition(rng, depth + 1)}"


def _corpus() -> list[str]:
    rng = random.Random(SEED)
    texts = ["", " ", "a = :v", "a=:v", "  a   =   :v  ", "a = :v @", "a ! b", "a.[0] = :v", "a\t= :v"]
    while len(texts) < TEXTS:
        text = _condition(rng)
        if rng.random() < 0.25:  # malformed: a character changed, added or dropped
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(["", rng.choice(JUNK)]) + text[at + rng.randint(0, 1) :]
        texts.append(text)
    return texts


def _lexed(texts: list[str]) -> list[Any]:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    answers: list[Any] = []
    for text in texts:
        parser = ConditionExpressionParser(text, NAMES, VALUES)
        try:
            answers.append(list(parser._lex_condition_expression()))
        except ValueError as exc:
            answers.append(("ValueError", str(exc)))
    return answers


def _fresh_table(client: Any) -> None:
    fresh_table(
        client,
        {"pk": {"S": "k0"}, "a": {"N": "1"}, "m": {"M": {"inner": {"S": "xy"}, "x": {"N": "3"}}}},
        {"pk": {"S": "k1"}, "a": {"S": "x"}, "l": {"L": [{"N": "5"}, {"M": {"y": {"S": "x"}}}]}},
        {"pk": {"S": "k2"}, "b": {"N": "5"}, "size": {"N": "1"}},
    )


def _used(text: str, defined: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in defined.items() if name in text}


def _error(exc: ClientError) -> tuple[str, str]:
    return exc.response["Error"]["Code"], exc.response["Error"]["Message"]


def _answers(client: Any, texts: list[str]) -> list[Any]:
    """Each text twice: as a conditional put, update and delete of each item, and as a scan's filter."""
    answers: list[Any] = []
    for round_ in range(2):
        _fresh_table(client)
        for i, text in enumerate(texts):
            extra: dict[str, Any] = {}
            if names := _used(text, NAMES):
                extra["ExpressionAttributeNames"] = names
            values = _used(text, VALUES)
            key = {"pk": {"S": f"k{i % 3}"}}
            calls: list[tuple[str, dict[str, Any]]] = [
                ("put_item", {"Item": {**key, "a": {"N": str(i)}}, "ConditionExpression": text}),
                (
                    "update_item",
                    {
                        "Key": key,
                        "UpdateExpression": "SET z = :one",
                        "ConditionExpression": text,
                        "ExpressionAttributeValues": {**values, ":one": {"N": "1"}},
                    },
                ),
                ("delete_item", {"Key": key, "ConditionExpression": text}),
                ("scan", {"FilterExpression": text}),
            ]
            for action, params in calls:
                if values and "ExpressionAttributeValues" not in params:
                    params["ExpressionAttributeValues"] = values
                try:
                    answer = getattr(client, action)(TableName="t", **params, **extra)
                    answers.append((round_, action, text, answer.get("Items")))
                except ClientError as exc:
                    answers.append((round_, action, text, *_error(exc)))
                except Exception as exc:  # what moto raises unanswered (in-process): the same, or not
                    answers.append((round_, action, text, type(exc).__name__, str(exc)))
        answers.append(sorted(str(item) for item in client.scan(TableName="t")["Items"]))
    return answers


def test_the_lexer_answers_like_moto(patch_off: None) -> None:
    texts = _corpus()
    expected = _lexed(texts)
    moto_conditions.install()
    assert _lexed(texts) == expected  # from moto's lexer, then kept
    assert _lexed(texts) == expected  # from the kept tokens
    assert sum(isinstance(answer, tuple) for answer in expected) >= 5  # some texts are refused


def test_conditional_writes_and_filters_answer_like_moto(aws: None, patch_off: None) -> None:
    client = boto3.client("dynamodb")
    texts = _corpus()
    expected = _answers(client, texts)
    moto_conditions.install()
    assert _answers(client, texts) == expected
    outcomes = {answer[3] if len(answer) == 5 else "ok" for answer in expected if isinstance(answer, tuple)}
    assert {"ok", "ConditionalCheckFailedException", "ValidationException"} <= outcomes


def test_lexed_nodes_are_fresh_for_every_request(patch_off: None) -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    moto_conditions.install()
    first = ConditionExpressionParser("a = :v AND b > :w", None, None)._lex_condition_expression()
    first[0].children.append("changed by a later step")
    first.clear()
    again = ConditionExpressionParser("a = :v AND b > :w", None, None)._lex_condition_expression()
    assert [node.text for node in again] == ["a", "=", ":v", "AND", "b", ">", ":w"]
    assert all(node.children == [] for node in again)

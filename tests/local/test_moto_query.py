"""The partition-indexed Query answers exactly what moto's own Query answers, and does not slow down."""

from __future__ import annotations

import random
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.local import moto_query
from tests.helpers.moto_patches import patch_off_fixture

SEED = 15
QUERIES = 200
HASH_S = ["a", "ab", "b", "ba", "c"]
HASH_N = ["1", "1.0", "2", "-3", "10", "2.50"]  # "1" and "1.0" are one number: one partition
RANGE_S = ["", "a", "a#1", "a#2", "b", "b#1", "ba", "c", "zz"]
GROUP = ["g1", "g2", "g3"]


patch_off = patch_off_fixture(moto_query)


def _tables(client: Any) -> None:
    client.create_table(
        TableName="composite",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "grp", "AttributeType": "S"},
            {"AttributeName": "num", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-group",
                "KeySchema": [
                    {"AttributeName": "grp", "KeyType": "HASH"},
                    {"AttributeName": "num", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["payload"]},
            },
            {
                "IndexName": "group-only",
                "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-num",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "num", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName="numbers",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "at", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "N"},
            {"AttributeName": "at", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName="simple",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _write(client: Any, rng: random.Random) -> None:
    """Puts, overwrites, updates (in place) and deletes, single and batched."""
    for _ in range(250):
        item: dict[str, Any] = {
            "pk": {"S": rng.choice(HASH_S)},
            "sk": {"S": rng.choice(RANGE_S[1:]) + str(rng.randrange(30))},
            "payload": {"S": "x" * rng.randrange(0, 40)},
            "n": {"N": str(rng.randrange(-5, 50))},
        }
        if rng.random() < 0.8:  # the rest are missing from the sparse indexes
            item["grp"] = {"S": rng.choice(GROUP)}
        if rng.random() < 0.7:
            item["num"] = {"N": str(rng.randrange(0, 20))}
        client.put_item(TableName="composite", Item=item)
    for _ in range(150):
        client.put_item(
            TableName="numbers",
            Item={"id": {"N": rng.choice(HASH_N)}, "at": {"N": str(rng.randrange(-20, 20) / 4)}},
        )
    requests = [{"PutRequest": {"Item": {"id": {"S": f"s{i}"}, "v": {"N": str(i)}}}} for i in range(25)]
    client.batch_write_item(RequestItems={"simple": requests})
    scanned = client.scan(TableName="composite")["Items"]
    for item in rng.sample(scanned, 60):
        key = {"pk": item["pk"], "sk": item["sk"]}
        if rng.random() < 0.5:
            client.delete_item(TableName="composite", Key=key)
        else:
            client.update_item(
                TableName="composite",
                Key=key,
                UpdateExpression="SET grp = :g, num = :n",
                ExpressionAttributeValues={":g": {"S": rng.choice(GROUP)}, ":n": {"N": "7"}},
            )
    client.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": "composite",
                    "Item": {"pk": {"S": "t"}, "sk": {"S": "a"}, "grp": {"S": "g1"}},
                }
            },
            {"Delete": {"TableName": "simple", "Key": {"id": {"S": "s3"}}}},
        ]
    )


def _range_condition(
    rng: random.Random, name: str, values: list[str], kind: str
) -> tuple[str, dict[str, Any]]:
    op = rng.choice(
        ["=", "<", "<=", ">", ">=", "between", "begins_with"]
        if kind == "S"
        else ["=", "<", "<=", ">", ">=", "between"]
    )
    low, high = sorted(rng.sample(values, 2))
    if op == "between":
        return f"{name} BETWEEN :lo AND :hi", {":lo": {kind: low}, ":hi": {kind: high}}
    if op == "begins_with":
        return f"begins_with({name}, :lo)", {":lo": {kind: low}}
    return f"{name} {op} :lo", {":lo": {kind: low}}


def _query(rng: random.Random) -> dict[str, Any]:
    table = rng.choice(["composite", "composite", "composite", "numbers", "simple"])
    params: dict[str, Any] = {"TableName": table, "ScanIndexForward": rng.random() < 0.5}
    values: dict[str, Any] = {}
    if table == "simple":
        condition = "id = :h"
        values[":h"] = {"S": f"s{rng.randrange(30)}"}
    elif table == "numbers":
        condition = "id = :h"
        values[":h"] = {"N": rng.choice(HASH_N)}
        if rng.random() < 0.7:
            extra, more = _range_condition(rng, "#at", ["-5", "-1.25", "0", "0.5", "1", "3.75"], "N")
            condition += " AND " + extra
            values.update(more)
            params["ExpressionAttributeNames"] = {"#at": "at"}
    else:
        index = rng.choice([None, None, "by-group", "group-only", "by-num"])
        if index is not None:
            params["IndexName"] = index
        hash_name = "grp" if index in ("by-group", "group-only") else "pk"
        condition = f"{hash_name} = :h"
        values[":h"] = {"S": rng.choice(GROUP if hash_name == "grp" else [*HASH_S, "t", "zz"])}
        range_name = {"by-group": "num", "by-num": "num", None: "sk"}.get(index)
        if range_name is not None and rng.random() < 0.7:
            kind = "N" if range_name == "num" else "S"
            pool = [str(v) for v in range(0, 20, 3)] if kind == "N" else RANGE_S[1:]
            extra, more = _range_condition(rng, range_name, pool, kind)
            condition += " AND " + extra
            values.update(more)
        if rng.random() < 0.3:
            params["FilterExpression"] = "n > :f OR attribute_not_exists(num)"
            values[":f"] = {"N": str(rng.randrange(0, 50))}
        if rng.random() < 0.3 and index != "by-num":
            params["ProjectionExpression"] = "pk, sk, payload"
        if rng.random() < 0.1:
            params["Select"] = "COUNT"
            params.pop("ProjectionExpression", None)
    params["KeyConditionExpression"] = condition
    params["ExpressionAttributeValues"] = values
    if rng.random() < 0.6:
        params["Limit"] = rng.randrange(1, 8)
    return params


def _pages(client: Any, params: dict[str, Any]) -> list[Any]:
    """Every page of a query (or its error), following LastEvaluatedKey."""
    pages: list[Any] = []
    request = dict(params)
    while len(pages) < 200:
        try:
            page = client.query(**request)
        except ClientError as exc:
            return [*pages, ("error", exc.response["Error"]["Code"], exc.response["Error"]["Message"])]
        page.pop("ResponseMetadata", None)
        pages.append(page)
        if "LastEvaluatedKey" not in page:
            return pages
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError(f"more than 200 pages: {params}")


def _answers(client: Any, queries: list[dict[str, Any]]) -> list[list[Any]]:
    return [_pages(client, params) for params in queries]


def test_patched_query_answers_like_moto(aws: None, patch_off: None) -> None:
    client = boto3.client("dynamodb")
    _tables(client)
    rng = random.Random(SEED)
    _write(client, rng)
    queries = [_query(rng) for _ in range(QUERIES)]
    moto_answers = _answers(client, queries)
    moto_query.install()
    patched_answers = _answers(client, queries)
    for params, expected, got in zip(queries, moto_answers, patched_answers, strict=True):
        assert got == expected, params
    items = sum(
        len(page.get("Items", [])) for pages in moto_answers for page in pages if isinstance(page, dict)
    )
    pages = sum(len(pages) for pages in moto_answers)
    errors = sum(1 for pages in moto_answers if isinstance(pages[-1], tuple))
    # The corpus exercises what it claims to: results, several pages, and moto's own errors.
    assert items > 300 and pages > len(queries) * 1.5 and errors < len(queries) // 4


def test_patch_sees_writes_made_after_queries(aws: None, patch_off: None) -> None:
    """Nothing is cached: a write between two queries shows in the second (puts, in-place updates of index
    keys, deletes, transactions), and a deleted and re-created table starts empty."""
    moto_query.install()
    client = boto3.client("dynamodb")
    _tables(client)
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    by_group = {"IndexName": "group-only", "KeyConditionExpression": "grp = :g"}

    def query(**params: Any) -> list[dict[str, Any]]:
        params.setdefault("KeyConditionExpression", "pk = :g")
        return client.query(TableName="composite", ExpressionAttributeValues={":g": {"S": g}}, **params)[
            "Items"
        ]

    g = "a"
    assert query() == []
    client.put_item(TableName="composite", Item={**key, "grp": {"S": "g1"}})
    assert [i["sk"]["S"] for i in query()] == ["1"]
    g = "g2"
    assert query(**by_group) == []
    client.update_item(
        TableName="composite",
        Key=key,
        UpdateExpression="SET grp = :g",
        ExpressionAttributeValues={":g": {"S": g}},
    )
    assert len(query(**by_group)) == 1
    client.transact_write_items(TransactItems=[{"Delete": {"TableName": "composite", "Key": key}}])
    assert query(**by_group) == []
    client.put_item(TableName="composite", Item={**key, "grp": {"S": "g2"}})
    client.delete_table(TableName="composite")
    _tables_composite_only(client)
    g = "a"
    assert query() == []


def _tables_composite_only(client: Any) -> None:
    for name in ("numbers", "simple"):
        client.delete_table(TableName=name)
    _tables(client)


def _time_queries(client: Any, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        client.query(
            TableName="numbers",
            KeyConditionExpression="id = :h",
            ExpressionAttributeValues={":h": {"N": str(i % 50)}},
        )
    return (time.perf_counter() - started) / count


def test_query_time_does_not_grow_with_the_table(aws: None, patch_off: None) -> None:
    moto_query.install()
    client = boto3.client("dynamodb")
    _tables(client)
    small = _time_queries(client, 50)
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].get_table("numbers")
    for i in range(8000):  # straight into moto: 8,000 PutItem calls would take the test's whole budget
        table.put_item({"id": {"N": str(i)}, "at": {"N": "0"}, "body": {"S": "x" * 100}})
    large = _time_queries(client, 50)
    assert large < small * 5, (small, large)  # moto alone: ~19x at 8,000 items

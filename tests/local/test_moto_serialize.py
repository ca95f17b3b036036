"""Kept member aliases: moto's DynamoDB and SQS answers are the same, byte for byte, with the serializer
patch, on a randomized corpus of items (every attribute type, nested maps and lists, sets, binary)."""

from __future__ import annotations

import random
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra.local import moto_serialize
from tests.helpers.moto_patches import patch_off_fixture

SEED = 15
ITEMS = 60


patch_off = patch_off_fixture(moto_serialize)


def _attribute(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = rng.choice(["S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", *(["M", "L"] if depth < 3 else [])])
    if kind == "S":
        return {"S": rng.choice(["", "x", "é ✓", 'a"b\\c', "S", "M"])}
    if kind == "N":
        return {"N": rng.choice(["0", "1", "-2.5", "1E+3", "123456789012345678"])}
    if kind == "B":
        return {"B": rng.randbytes(rng.randint(1, 5))}
    if kind == "SS":
        return {"SS": rng.sample(["a", "b", "c", "d"], rng.randint(1, 3))}
    if kind == "NS":
        return {"NS": rng.sample(["1", "2", "3.5"], rng.randint(1, 3))}
    if kind == "BS":
        return {"BS": [bytes([i]) for i in rng.sample(range(9), rng.randint(1, 3))]}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "M":
        names = rng.sample(
            ["S", "N", "M", "L", "Item", "Items", "AttributeValue", "a", "b"], rng.randint(0, 3)
        )
        return {"M": {name: _attribute(rng, depth + 1) for name in names}}
    return {"L": [_attribute(rng, depth + 1) for _ in range(rng.randint(0, 3))]}


def _items() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    items = []
    for i in range(ITEMS):
        names = rng.sample(["S", "N", "B", "M", "L", "Count", "Items", "data", "x"], rng.randint(0, 4))
        items.append({"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}, **{n: _attribute(rng) for n in names}})
    return items


def _answers(client: Any, sqs: Any) -> list[Any]:
    """Raw response bodies of every read and write of the corpus, and of a queue's round trip."""
    bodies: list[Any] = []
    client.meta.events.register("after-call", lambda http_response, **_: bodies.append(http_response.content))
    sqs.meta.events.register("after-call", lambda http_response, **_: bodies.append(http_response.content))
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    items = _items()
    for item in items:
        client.put_item(TableName="t", Item=item, ReturnValues="ALL_OLD")
        client.put_item(TableName="t", Item=item, ReturnValues="ALL_OLD")
        key = {"pk": item["pk"], "sk": item["sk"]}
        client.get_item(TableName="t", Key=key)
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET extra = :v",
            ExpressionAttributeValues={":v": _attribute(random.Random(item["sk"]["N"]))},
            ReturnValues="ALL_NEW",
        )
        try:
            client.put_item(
                TableName="t",
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            bodies.append(exc.response.get("Item"))
    for pk in ("p0", "p3", "p9"):
        client.query(
            TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}
        )
    client.scan(TableName="t", Limit=7)
    client.scan(TableName="t", ReturnConsumedCapacity="TOTAL")
    keys = [{"pk": item["pk"], "sk": item["sk"]} for item in items[:10]]
    client.batch_get_item(RequestItems={"t": {"Keys": keys}})
    client.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": key}} for key in keys])
    client.describe_table(TableName="t")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url, MessageBody="m", MessageAttributes={"a": {"DataType": "String", "StringValue": "v"}}
    )
    sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=0)
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return [_without_ids(body) for body in bodies]


def _without_ids(body: Any) -> Any:
    """A body with the parts that differ between two runs by design (queue ids, receipts, times) masked."""
    if not isinstance(body, bytes):
        return body
    import re

    text = body.decode()
    text = re.sub(
        r'"(MessageId|ReceiptHandle|RequestId|CreationDateTime|TableId|TableArn|TableName|QueueUrl'
        r"|LastModifiedTimestamp|CreatedTimestamp|SentTimestamp|ApproximateFirstReceiveTimestamp"
        r'|CreationDate|QueueArn)": ?("[^"]*"|[0-9.]+)',
        r'"\1": _',
        text,
    )
    return text


def test_answers_are_the_same_bytes_as_moto(aws: None, patch_off: None) -> None:
    expected = _answers(boto3.client("dynamodb"), boto3.client("sqs"))
    boto3.client("dynamodb").delete_table(TableName="t")
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="q")["QueueUrl"])
    moto_serialize.install()
    assert _answers(boto3.client("dynamodb"), boto3.client("sqs")) == expected
    assert len(expected) > 6 * ITEMS and any(b'"BS"' in str(body).encode() for body in expected)

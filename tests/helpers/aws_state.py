"""Snapshots of every table and queue, to show a request changed nothing."""

from __future__ import annotations

from typing import Any

from polos.aws import settings


def snapshot() -> dict[str, Any]:
    """Every item of every table and the message counts of every queue."""
    dynamodb, sqs = settings.dynamodb(), settings.sqs()
    state: dict[str, Any] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        items: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        state[f"table:{table}"] = sorted(repr(sorted(item.items())) for item in items)
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        state[f"queue:{url}"] = attributes
    return state


def drain(queue_url: str) -> list[str]:
    """Receive and delete every visible message of a queue; their bodies."""
    sqs = settings.sqs()
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )

"""The SQS patch answers exactly what moto answers: one random sequence of SQS requests, on a clock moved
by the test, run with moto's own SQS and with the patch, gives the same answers and errors."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import boto3
from botocore.exceptions import ClientError
from freezegun import freeze_time

from infra.local import moto_sqs
from tests.helpers.moto_patches import patch_off_fixture

SEED = 15
STEPS = 250
ATTRIBUTE_NAMES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "MessageRetentionPeriod",
    "VisibilityTimeout",
    "RedrivePolicy",
    "Policy",  # never set: left out of the answer
    "QueueArn",
    "KmsMasterKeyId",  # valid, never set
    "FifoQueue",
    "All",
    "NoSuchAttribute",  # refused
    "",  # refused
]
# The moves of the clock between two requests: often none, sometimes past a delay, a visibility timeout or
# the shortest retention period (60 s).
TICKS = [0, 0, 0, 0.4, 1, 2.5, 6, 61]


patch_off = patch_off_fixture(moto_sqs)


def _queues(client: Any, prefix: str) -> dict[str, str]:
    urls = {
        "dlq": client.create_queue(QueueName=prefix + "dlq")["QueueUrl"],
        "plain": client.create_queue(QueueName=prefix + "plain", Attributes={"VisibilityTimeout": "5"})[
            "QueueUrl"
        ],
        "delayed": client.create_queue(QueueName=prefix + "delayed", Attributes={"DelaySeconds": "2"})[
            "QueueUrl"
        ],
        "short": client.create_queue(
            QueueName=prefix + "short", Attributes={"MessageRetentionPeriod": "60", "VisibilityTimeout": "1"}
        )["QueueUrl"],
    }
    urls["fifo"] = client.create_queue(
        QueueName=prefix + "fifo.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "2"},
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=urls["dlq"], AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": 2})
    urls["redriven"] = client.create_queue(
        QueueName=prefix + "redriven", Attributes={"VisibilityTimeout": "1", "RedrivePolicy": policy}
    )["QueueUrl"]
    return urls


_QUEUES = ("dlq", "plain", "delayed", "short", "fifo", "redriven")


def _request(client: Any, rng: random.Random, urls: dict[str, str], handles: list[tuple[str, str]]) -> Any:
    """One random request; returns its answer (or error) without the response metadata."""
    name = rng.choice(sorted(urls))
    url = urls[name]
    kind = rng.choice(["send", "send", "batch", "receive", "receive", "receive", "delete", "hide", "attrs"])
    try:
        if kind == "send":
            params: dict[str, Any] = {"QueueUrl": url, "MessageBody": f"body-{rng.randrange(50)}"}
            if name == "fifo":  # duplicate bodies within 5 minutes are dropped (content-based)
                params["MessageGroupId"] = rng.choice(["g1", "g2"])
            elif rng.random() < 0.2:
                params["DelaySeconds"] = rng.choice([1, 3])
            answer = client.send_message(**params)
        elif kind == "batch":
            entries: list[dict[str, Any]] = [
                {"Id": str(i), "MessageBody": f"b{rng.randrange(50)}"} for i in range(rng.randrange(1, 11))
            ]
            if name == "fifo":
                for entry in entries:
                    entry["MessageGroupId"] = rng.choice(["g1", "g2"])
            answer = client.send_message_batch(QueueUrl=url, Entries=entries)
        elif kind == "receive":
            params = {
                "QueueUrl": url,
                "MaxNumberOfMessages": rng.randrange(1, 11),
                "WaitTimeSeconds": 0,
                "AttributeNames": ["All"],
            }
            if rng.random() < 0.5:
                params["VisibilityTimeout"] = rng.choice([0, 1, 4])
            answer = client.receive_message(**params)
            handles += [(url, m["ReceiptHandle"]) for m in answer.get("Messages", [])]
        elif kind == "delete" and handles:
            picked = [handles[rng.randrange(len(handles))] for _ in range(rng.randrange(1, 4))]
            answer = client.delete_message_batch(
                QueueUrl=picked[0][0],
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, (_, h) in enumerate(picked)],
            )
        elif kind == "hide" and handles:
            queue_url, handle = handles[rng.randrange(len(handles))]
            answer = client.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=rng.choice([0, 2])
            )
        else:
            names = rng.sample(ATTRIBUTE_NAMES, rng.randrange(1, 4))
            if rng.random() < 0.1:
                names = [names[0], names[0]]  # a name twice
            answer = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    except ClientError as exc:
        return (kind, name, exc.response["Error"]["Code"], exc.response["Error"]["Message"])
    answer.pop("ResponseMetadata", None)
    return (kind, name, answer)


def _run(prefix: str) -> list[Any]:
    """The same requests (same seed, same clock) on fresh queues named with ``prefix``."""
    rng = random.Random(SEED)
    answers: list[Any] = []
    with freeze_time("2024-05-01 12:00:00") as frozen:
        client = boto3.client("sqs")
        urls = _queues(client, prefix)
        handles: list[tuple[str, str]] = []
        for _ in range(STEPS):
            answers.append(_request(client, rng, urls, handles))
            frozen.tick(rng.choice(TICKS))
        answers += [
            client.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
            for u in urls.values()
        ]
    return answers


def _normalised(answers: list[Any], prefix: str) -> Any:
    """The answers with the queue name prefix removed and every message id and receipt handle replaced by
    the order it first appeared in (moto draws them at random)."""
    seen: dict[str, str] = {}

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, str) and key in ("MessageId", "ReceiptHandle"):
            return seen.setdefault(value, f"<{len(seen)}>")
        if isinstance(value, str):  # an error message may quote a receipt handle
            return re.sub(r'"([^"]+)"', lambda m: f'"{seen.get(m[1], m[1])}"', value.replace(prefix, ""))
        return value

    return walk(answers)


def test_patched_sqs_answers_like_moto(aws: None, patch_off: None) -> None:
    expected = _run("a-")
    moto_sqs.install()
    got = _run("b-")
    assert _normalised(got, "b-") == _normalised(expected, "a-")
    requests = [answer for answer in expected if isinstance(answer, tuple)]
    received = [a for a in requests if a[0] == "receive" and len(a) == 3 and a[2].get("Messages")]
    refused = [a for a in requests if a[0] == "attrs" and len(a) == 4]
    counts = [
        a for a in requests if len(a) == 3 and "ApproximateNumberOfMessages" in a[2].get("Attributes", {})
    ]
    dead = expected[-len(_QUEUES)]  # the dead-letter queue's final attributes (created first)
    # The corpus exercises what it claims to: every kind of request, messages received, refused names,
    # counts, and messages moved to the dead-letter queue.
    assert {a[0] for a in requests} >= {"send", "batch", "receive", "delete", "hide", "attrs"}
    assert len(received) > 30 and refused and counts, (len(received), len(refused), len(counts))
    assert int(dead["ApproximateNumberOfMessages"]) > 0


class VisibilityReads:
    """Counts how often moto reads a message's visibility while the ``with`` block runs."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> VisibilityReads:
        from moto.sqs import models

        self._original = original = models.Message.visible

        def counted(message: Any) -> bool:
            self.count += 1
            return bool(original.fget(message))  # type: ignore[attr-defined]

        models.Message.visible = property(counted)  # type: ignore[assignment,method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from moto.sqs import models

        models.Message.visible = self._original  # type: ignore[method-assign]


def _deep_queue(messages: int) -> tuple[Any, str]:
    """A client and a queue holding ``messages`` messages, with the patch installed."""
    moto_sqs.install()
    client = boto3.client("sqs")
    url = client.create_queue(QueueName="deep")["QueueUrl"]
    for _ in range(messages // 10):
        client.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)]
        )
    return client, url


def test_receive_costs_do_not_grow_per_message_with_the_queue(aws: None, patch_off: None) -> None:
    """A receive of 10 messages walks a 2,000-message queue a few times, not once per message received."""
    client, url = _deep_queue(2000)
    with VisibilityReads() as reads:
        client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    assert reads.count < 3 * 2000, reads.count  # moto alone: ~20 walks of the queue (~40,000 reads)


def test_sending_does_not_count_the_queue(aws: None, patch_off: None) -> None:
    """A message sent to a queue of 1,000 reads no message's visibility (moto alone: three walks of the
    queue per message sent, for one setting of the queue)."""
    client, url = _deep_queue(1000)
    with VisibilityReads() as reads:
        client.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "y"} for i in range(10)]
        )
        during_send = reads.count
        attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert during_send == 0, during_send
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1010" and reads.count > 1000  # counted

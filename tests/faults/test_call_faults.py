"""The functions' AWS calls meet the faults: a write past the partition key's scaled budget is throttled
(a transaction is cancelled with ``ThrottlingError``), SQS throttles, SQS's character set and delay limit
and Lambda's response limit hold, and the ``iam`` hook refuses what its module denies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from polos.aws import settings

from infra.local.faults import calls
from infra.local.faults.config import AwsFaults
from infra.local.faults.injector import Injector
from infra.local.faults.limits import ResponseTooLarge
from infra.local.faults.throttle import READ_UNITS, WRITE_UNITS
from infra.model import TABLES, AppModel, FunctionSpec

Client = Any


@pytest.fixture
def faulted(stack: dict[str, str]) -> Iterator[Callable[[str], tuple[CallsUnder, Injector]]]:
    """``faulted("throttle=0")``: runs code as the worker function under those faults."""
    calls.install()

    def make(text: str) -> tuple[CallsUnder, Injector]:
        injector = Injector(AwsFaults.parse(text, seed=11))
        model = AppModel(tables=TABLES, queues=())
        return CallsUnder(calls.CallFaults(injector, model)), injector

    yield make


class CallsUnder:
    """Runs a function body as the worker function, with clients that do not retry (to see each answer)."""

    def __init__(self, faults: calls.CallFaults) -> None:
        self.faults = faults
        self.spec: FunctionSpec = next(f for f in AppModel((), ()).functions if f.consumes_queues)
        no_retries = Config(retries={"mode": "standard", "total_max_attempts": 1})
        session = botocore.session.get_session()  # made after install(): it has the hooks
        self.dynamodb: Client = session.create_client("dynamodb", config=no_retries)
        self.sqs: Client = session.create_client("sqs", config=no_retries)

    def run(self, body: Callable[[], Any]) -> Any:
        return self.faults.as_function(self.spec, lambda event: body())({})


def test_writes_past_a_partition_keys_budget_are_throttled_and_other_keys_are_not(
    faulted: Callable[[str], tuple[CallsUnder, Injector]],
) -> None:
    under, injector = faulted("throttle=0")
    assert under.faults.throttle is not None
    under.faults.throttle.budgets._clock = lambda: 0.0  # one second that never ends
    table = settings.get_settings().runs_table

    def put(pk: str, n: int) -> None:
        under.dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": str(n)}})

    outside = [put("hot", n) for n in range(WRITE_UNITS + 5)]  # not a function's call: never throttled
    assert len(outside) == WRITE_UNITS + 5 and injector.counts() == {}

    under.run(lambda: [put("hot", n) for n in range(WRITE_UNITS)])
    with pytest.raises(ClientError) as refused:
        under.run(lambda: put("hot", WRITE_UNITS))
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    under.run(lambda: put("cold", 0))  # another partition key has its own budget
    assert injector.counts() == {"throttle": 1}

    with pytest.raises(ClientError) as cancelled:
        under.run(
            lambda: under.dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": {"pk": {"S": "cold"}, "sk": {"S": "t"}}}},
                    {"Put": {"TableName": table, "Item": {"pk": {"S": "hot"}, "sk": {"S": "t"}}}},
                ]
            )
        )
    error = cancelled.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ThrottlingError"]


def test_a_throttle_rate_throttles_sqs_and_botocore_retries_it_as_on_aws(
    faulted: Callable[[str], tuple[CallsUnder, Injector]], stack: dict[str, str]
) -> None:
    under, injector = faulted("throttle=1")
    url = stack["user-signup-handler"]
    with pytest.raises(ClientError) as refused:
        under.run(lambda: under.sqs.send_message(QueueUrl=url, MessageBody="{}"))
    assert refused.value.response["Error"]["Code"] == "RequestThrottled"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    retried, retried_injector = faulted("throttle=0.5")
    retrying = botocore.session.get_session().create_client(
        "sqs", config=Config(retries={"mode": "standard", "max_attempts": 10})
    )
    retried.run(lambda: [retrying.send_message(QueueUrl=url, MessageBody="{}") for _ in range(3)])
    assert injector.counts()["throttle"] == 1
    assert retried_injector.counts()["throttle"] >= 1  # thrown at the client, retried, then sent


def test_sqs_refuses_characters_and_delays_moto_takes(
    faulted: Callable[[str], tuple[CallsUnder, Injector]], stack: dict[str, str]
) -> None:
    under, injector = faulted("limits")
    url = stack["user-signup-handler"]
    under.sqs.send_message(QueueUrl=url, MessageBody="bad \x00 byte")  # moto takes it

    def send(body: str, delay: int) -> Any:
        return under.sqs.send_message(QueueUrl=url, MessageBody=body, DelaySeconds=delay)

    refused_sends = (("bad \x00 byte", 0, "InvalidMessageContents"), ("{}", 901, "InvalidParameterValue"))
    for body, delay, code in refused_sends:
        with pytest.raises(ClientError) as refused:
            under.run(lambda b=body, d=delay: send(b, d))
        assert refused.value.response["Error"]["Code"] == code
    under.run(lambda: under.sqs.send_message(QueueUrl=url, MessageBody="ok \t\n\r \ue000", DelaySeconds=900))
    assert injector.counts() == {"limits": 2}


def test_a_response_over_six_megabytes_fails_the_invocation(
    faulted: Callable[[str], tuple[CallsUnder, Injector]],
) -> None:
    under, injector = faulted("limits")
    assert len(under.run(lambda: "x" * 6_000_000)) == 6_000_000
    with pytest.raises(ResponseTooLarge, match="exceeded maximum allowed payload size"):
        under.run(lambda: "x" * 6_300_000)
    assert injector.counts() == {"limits": 1}


def test_reads_of_binary_attributes_are_charged_by_their_size(
    faulted: Callable[[str], tuple[CallsUnder, Injector]],
) -> None:
    """Event data over 256 bytes is stored as zlib binary (``data_z``): the reads that return it are charged
    by DynamoDB's size rules like any other (botocore hands the bytes over as they are)."""
    under, injector = faulted("throttle=0")
    assert under.faults.throttle is not None
    under.faults.throttle.budgets._clock = lambda: 0.0  # one second that never ends
    table = settings.get_settings().events_table
    item = {"pk": {"S": "topic#t#0"}, "sk": {"S": "1"}, "data_z": {"B": b"\x00" * 5000}}
    settings.dynamodb().put_item(TableName=table, Item=item)
    query = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "topic#t#0"}}}
    for _ in range(READ_UNITS // 2):  # 5 KB: 2 read units a Query
        under.run(lambda: under.dynamodb.query(TableName=table, **query))
    with pytest.raises(ClientError) as refused:
        under.run(lambda: under.dynamodb.query(TableName=table, **query))
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert injector.counts() == {"throttle": 1}

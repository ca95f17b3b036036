"""Our AWS clients (``polos.aws.retries``): transactions cancelled by throttling are retried, a throttle or
timeout left after the retries is ``InfrastructureThrottled``, and no attempt starts past the time budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from helpers.throttle import throttle
from polos.aws import retries, settings
from polos.aws.overload import InfrastructureThrottled, time_budget, watch
from polos.errors import InfrastructureThrottled as Exported

TABLE = "retries"


@pytest.fixture
def table(aws: None) -> Iterator[Any]:
    client = settings.dynamodb()
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client


def put(client: Any, key: str = "a") -> None:
    client.put_item(TableName=TABLE, Item={"pk": {"S": key}})


def transact(client: Any) -> None:
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "t1"}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "t2"}}}},
        ]
    )


def test_a_transaction_cancelled_by_throttling_is_retried(table: Any) -> None:
    with throttle({"TransactWriteItems"}, per="request", transaction=True, times=2) as throttled:
        transact(table)
    assert throttled.total == 2
    assert "Item" in table.get_item(TableName=TABLE, Key={"pk": {"S": "t2"}})


def test_a_transaction_cancelled_by_a_condition_is_not_retried(table: Any) -> None:
    put(table, "t1")
    condition = {"ConditionExpression": "attribute_not_exists(pk)"}
    with pytest.raises(ClientError) as raised:
        table.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": {"pk": {"S": "t1"}}, **condition}}]
        )
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert not isinstance(raised.value, InfrastructureThrottled)


def test_a_throttle_left_after_the_retries_is_infrastructure_throttled(table: Any) -> None:
    assert Exported is InfrastructureThrottled
    with throttle({"PutItem"}, per="request") as throttled, pytest.raises(InfrastructureThrottled) as raised:
        put(table)
    assert throttled.total == retries.MAX_ATTEMPTS
    assert (raised.value.operation, raised.value.reason) == ("PutItem", "throttled")
    with (
        throttle({"TransactWriteItems"}, per="request", transaction=True),
        pytest.raises(InfrastructureThrottled),
    ):
        transact(table)


def test_a_timeout_left_after_the_retries_is_infrastructure_throttled(table: Any) -> None:
    attempts = []

    def time_out(**_: Any) -> None:
        attempts.append(1)
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    table.meta.events.register_first("before-send.dynamodb.PutItem", time_out)
    try:
        with watch() as seen, pytest.raises(InfrastructureThrottled) as raised:
            put(table)
    finally:
        table.meta.events.unregister("before-send.dynamodb.PutItem", time_out)
    assert len(attempts) == retries.MAX_ATTEMPTS
    assert raised.value.reason == "timeout" and seen == [raised.value]


def test_no_attempt_starts_that_could_end_after_the_budget(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retries, "_delay", lambda attempt, throttled: 0.3)
    started = time.monotonic()
    room_for_one_attempt = time_budget(retries.ATTEMPT_SECONDS + 0.2)  # not for a retry after 0.3 s
    refused = pytest.raises(InfrastructureThrottled)
    with throttle({"PutItem"}, per="request") as throttled, room_for_one_attempt, refused:
        put(table)
    assert throttled.total == 1 and time.monotonic() - started < 1
    with time_budget(retries.ATTEMPT_SECONDS - 1), pytest.raises(InfrastructureThrottled) as raised:
        put(table)
    assert raised.value.reason == "timeout" and "budget" in str(raised.value)
    put(table)  # no budget outside the block


def test_the_clients_have_timeouts(aws: None) -> None:
    config = settings.dynamodb().meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 6)

"""The meter's other rules: log bytes per invocation, Lambda's CPU share, storage for the retention period."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging

import boto3
import pytest
from aws_lambda_powertools import Logger
from polos.aws import settings
from polos.aws.item_size import item_size

from bench import storage
from bench.logs import EVENT_OVERHEAD_BYTES, TAP, LogVolume, platform_lines, tap_loggers, tapped, volume_of
from bench.stack import FULL_VCPU_MB, LambdaCall
from infra.metering.meter import Meter
from infra.model import WORKER_FUNCTION


def test_the_tap_counts_each_invocations_lines_and_bytes() -> None:
    meter = Meter()
    with tapped():
        with meter.tag("ApiFunction:1"):
            print("é")  # 2 bytes, one line
            print('{"level":"INFO"}')
        with meter.tag("WorkerFunction:2"):
            print("x", end="")  # no newline yet: bytes but no event
        print("outside any invocation")
    assert TAP.take("ApiFunction:1") == LogVolume(2, 2 + 16)
    assert TAP.take("WorkerFunction:2") == LogVolume(0, 1)
    assert TAP.take("ApiFunction:1") == LogVolume(0, 0)  # taken once
    # Ingestion bills the messages' bytes; the 26 bytes per event are PutLogEvents' batch-size rule.
    assert LogVolume(2, 18).billed_bytes == 18
    assert LogVolume(2, 18).with_batch_overhead == 18 + 2 * EVENT_OVERHEAD_BYTES


def test_powertools_logger_lines_reach_the_tap_at_info() -> None:
    stream = io.StringIO()
    logger = Logger(service="bench-test", level="INFO", logger_handler=logging.StreamHandler(stream))
    logger.info("kept")
    logger.debug("dropped")
    meter = Meter()
    with contextlib.redirect_stdout(stream), tapped():
        handler = logging.getLogger("bench-test").handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(TAP)  # what tap_loggers does for stdout handlers
        tap_loggers()
        with meter.tag("WorkerFunction:9"):
            logger.info("run completed", extra={"run_id": "r"})
            logger.debug("not at INFO")
    volume = TAP.take("WorkerFunction:9")
    assert volume.events == 1 and volume.message_bytes > len('"message":"run completed"')


def test_lambda_writes_start_end_and_report_per_invocation() -> None:
    lines = platform_lines(memory_mb=512, duration_ms=12.345, billed_ms=13)
    assert [line.split(" ")[0] for line in lines] == ["START", "END", "REPORT"]
    assert "Billed Duration: 13 ms" in lines[2] and "Memory Size: 512 MB" in lines[2]
    call = LambdaCall.of(WORKER_FUNCTION, 0.0, [], LogVolume(1, 100))
    assert call.log == LogVolume(4, 100 + volume_of(platform_lines(512, 0.0, 1)).message_bytes)


@pytest.mark.parametrize(
    ("spec", "factor"),
    [
        (WORKER_FUNCTION, FULL_VCPU_MB / 512),
        (dataclasses.replace(WORKER_FUNCTION, memory_mb=256), FULL_VCPU_MB / 256),
    ],
)
def test_compute_is_scaled_to_the_cpu_share_of_the_memory_size(spec: object, factor: float) -> None:
    call = LambdaCall.of(spec, wall_seconds=0.010, calls=[], log=LogVolume(0, 0))  # type: ignore[arg-type]
    assert call.cpu_factor == pytest.approx(factor)
    assert call.billed_ms == pytest.approx(10 * factor, abs=1)


def test_storage_counts_items_overhead_and_index_copies(aws: None) -> None:
    client = settings.dynamodb()
    client.create_table(
        TableName="stored",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "wf", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_wf",
                "KeySchema": [{"AttributeName": "wf", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    client.put_item(TableName="stored", Item={"pk": {"S": "a"}, "v": {"S": "x" * 96}})  # 100 bytes
    client.put_item(TableName="stored", Item={"pk": {"S": "b"}, "wf": {"S": "w"}, "v": {"S": "x" * 93}})
    shadow = boto3.client("dynamodb", region_name="us-east-1")
    held = storage.measure(shadow, ["stored"], retention_days=30)
    assert held.table_bytes == 2 * (100 + storage.ITEM_OVERHEAD_BYTES)
    assert held.index_bytes == 100 + storage.ITEM_OVERHEAD_BYTES  # only the item with the index key
    assert held.index_bytes_keys_only == (3 + 3) + storage.ITEM_OVERHEAD_BYTES  # pk "b" + wf "w"
    assert storage.retention_months(30) == pytest.approx(720 / 730)


def test_storage_bills_each_item_for_its_own_life(aws: None) -> None:
    """An item whose TTL is a day away (an Idempotency-Key record) is billed a day plus TTL's deletion lag,
    not the retention period; one without the TTL attribute the retention period."""
    client = settings.dynamodb()
    client.create_table(
        TableName="lives",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    client.update_time_to_live(
        TableName="lives", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    now = 1_800_000_000.0
    day = {"N": str(int(now) + 86_400)}
    record = {"pk": {"S": "a"}, "expires_at": day, "v": {"S": "x" * 80}}
    client.put_item(TableName="lives", Item=record)
    shadow = boto3.client("dynamodb", region_name="us-east-1")
    held = storage.measure(shadow, ["lives"], retention_days=30, now=now)
    lag = storage.TTL_DELETE_LAG_DAYS
    billed = (item_size(record) + storage.ITEM_OVERHEAD_BYTES) * (1 + lag) / (30 + lag)
    assert held.table_bytes == pytest.approx(billed)
    client.put_item(TableName="lives", Item={"pk": {"S": "b"}, "v": {"S": "x" * 96}})  # 100 bytes
    kept = storage.measure(shadow, ["lives"], retention_days=30, now=now) - held
    assert kept.table_bytes == pytest.approx(100 + storage.ITEM_OVERHEAD_BYTES)

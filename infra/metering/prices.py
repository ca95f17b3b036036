"""The price table: US East (N. Virginia) list prices, each with its source. The one place prices live.

Every figure is per unit (not per million) so the arithmetic elsewhere is a plain product. Prices as
listed on ``PRICES_DATE``: the fixed monthly lines (custom metrics, Scheduler, KMS, logs storage) were added
then (Scheduler's also found in AWS's price list file AWSEvents: "$0 for the first 14 million scheduled
invocations"), the storage and logs lines on 2026-11-30, the others date from the first bench, 2026-11-25,
unchanged since. Free tiers are left out: the figures are the marginal price of a million events.
"""

from __future__ import annotations

from dataclasses import dataclass

REGION = "us-east-1"
MILLION = 1_000_000
GB = 1024**3
PRICES_DATE = "2026-12-07"


@dataclass(frozen=True)
class Price:
    """``usd`` per one ``unit``; ``source`` is where the figure is published."""

    name: str
    usd: float
    unit: str
    source: str


SQS_REQUEST = Price(
    "SQS standard request",
    0.40 / MILLION,
    "request; every 64 KB chunk of a request's payload is billed as one request",
    "https://aws.amazon.com/sqs/pricing/ (Standard queue, after the first 1M free: $0.40 per million)",
)
DYNAMODB_WRITE_UNIT = Price(
    "DynamoDB on-demand write request unit",
    0.625 / MILLION,
    "write unit (1 KB of item, 2 for a transactional write)",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per million write request units)",
)
DYNAMODB_READ_UNIT = Price(
    "DynamoDB on-demand read request unit",
    0.125 / MILLION,
    "read unit (4 KB strongly consistent, half for eventually consistent, 2 for transactional)",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.125 per million read request units)",
)
LAMBDA_REQUEST = Price(
    "Lambda request",
    0.20 / MILLION,
    "invocation",
    "https://aws.amazon.com/lambda/pricing/ ($0.20 per million requests)",
)
LAMBDA_GB_SECOND_ARM = Price(
    "Lambda duration, arm64",
    0.0000133334,
    "GB-second",
    "https://aws.amazon.com/lambda/pricing/ (Arm price, first 7.5B GB-s/month: $0.0000133334 per GB-s)",
)
HTTP_API_REQUEST = Price(
    "API Gateway HTTP API request",
    1.00 / MILLION,
    "request; metered in 512 KB increments",
    "https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, first 300M/month: $1.00 per million)",
)
EVENTBRIDGE_EVENT = Price(
    "EventBridge custom event",
    1.00 / MILLION,
    "event published to an event bus (64 KB chunks)",
    "https://aws.amazon.com/eventbridge/pricing/ ($1.00 per million custom events)",
)
# Found with the `search` tool: the AWS Lambda pricing page as transcribed (verbatim price text "$8.00/M",
# labelled an example rate) in api-evangelist/aws-lambda plans/aws-lambda-plans-pricing.yml (page read
# 2026-09-20, source https://aws.amazon.com/lambda/pricing/). Its data-written and data-retained charges
# were not found and are left out; the reference line is therefore a lower bound.
DURABLE_OPERATION = Price(
    "Lambda durable functions operation",
    8.00 / MILLION,
    "durable operation (step, wait, callback, ...)",
    "https://aws.amazon.com/lambda/pricing/ via api-evangelist/aws-lambda plans/aws-lambda-plans-pricing.yml "
    '("Durable Functions operations (example rate): $8.00/M")',
)

DYNAMODB_STORAGE = Price(
    "DynamoDB storage (Standard table class)",
    0.25 / GB,
    "byte-month (items + 100 bytes each, in the table and in every index holding them)",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Data storage: $0.25 per GB-month after 25 GB)",
)
DYNAMODB_PITR = Price(
    "DynamoDB point-in-time recovery",
    0.20 / GB,
    "byte-month of table size (continuous backups; indexes not included)",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Continuous backups (PITR): $0.20 per GB-month)",
)
CLOUDWATCH_LOGS_INGESTION = Price(
    "CloudWatch Logs ingestion (Standard class)",
    0.50 / GB,
    "byte ingested (each log event's UTF-8 bytes: IncomingBytes)",
    "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard: collect (data ingestion) $0.50 per GB)",
)

# Fixed monthly lines (``bench.fixed``): billed per month or per request of a deployment, not per event.
CLOUDWATCH_CUSTOM_METRIC = Price(
    "CloudWatch custom metric",
    0.30,
    "metric-month (one metric = one name x one combination of dimension values; prorated by the hour)",
    "https://aws.amazon.com/cloudwatch/pricing/ (Metrics, first 10,000 metrics: $0.30 per metric per month)",
)
SCHEDULER_INVOCATION = Price(
    "EventBridge Scheduler invocation",
    1.00 / MILLION,
    "scheduled invocation (64 KB chunks); the first 14M a month are free, not counted here",
    "https://aws.amazon.com/eventbridge/pricing/ (Scheduler: $1.00 per million invocations after 14M free)",
)
KMS_REQUEST = Price(
    "KMS request",
    0.03 / 10_000,
    "request to a KMS key (an AWS managed key has no monthly fee; an AWS owned key bills nothing)",
    "https://aws.amazon.com/kms/pricing/ ($0.03 per 10,000 requests); DynamoDB: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.tutorial.html "
    "(AWS owned key: no additional fee; AWS managed key aws/dynamodb: AWS KMS charges apply)",
)
CLOUDWATCH_LOGS_STORAGE = Price(
    "CloudWatch Logs storage",
    0.03 / GB,
    "byte-month archived (counted uncompressed: an upper bound; AWS stores it compressed)",
    "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard: store (archival) $0.03 per GB)",
)

STEP_FUNCTIONS_TRANSITION = Price(
    "Step Functions Standard state transition",
    25.00 / MILLION,
    "state transition (a Wait state is one)",
    "https://aws.amazon.com/step-functions/pricing/ (Standard workflows: $0.025 per 1,000 state transitions)",
)

ALL: tuple[Price, ...] = (
    HTTP_API_REQUEST,
    LAMBDA_REQUEST,
    LAMBDA_GB_SECOND_ARM,
    SQS_REQUEST,
    DYNAMODB_WRITE_UNIT,
    DYNAMODB_READ_UNIT,
    DYNAMODB_STORAGE,
    DYNAMODB_PITR,
    CLOUDWATCH_LOGS_INGESTION,
    CLOUDWATCH_LOGS_STORAGE,
    CLOUDWATCH_CUSTOM_METRIC,
    SCHEDULER_INVOCATION,
    KMS_REQUEST,
    EVENTBRIDGE_EVENT,
    DURABLE_OPERATION,
    STEP_FUNCTIONS_TRANSITION,
)

# Billing granularity of request payloads.
SQS_CHUNK_BYTES = 64 * 1024
HTTP_API_CHUNK_BYTES = 512 * 1024

# Lambda sizing the cost model assumes for every function (the template's figure when it states one).
LAMBDA_MEMORY_MB = 512
# Idle polling by an SQS event source mapping (AWS runs the pollers; their empty receives are billed to
# you). Assumption: 5 pollers per queue doing 20-second long polls while the queue is empty.
ESM_IDLE_POLLERS = 5
ESM_LONG_POLL_SECONDS = 20
SECONDS_PER_MONTH = 30 * 86_400


def esm_idle_receives_per_month() -> int:
    """Empty ``ReceiveMessage`` calls one idle queue costs per month under the stated assumption."""
    return ESM_IDLE_POLLERS * SECONDS_PER_MONTH // ESM_LONG_POLL_SECONDS

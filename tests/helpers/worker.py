"""Real SQS messages through the worker handler, as the event source mappings deliver them (on moto).

Built on the local stack's mapping emulator (``infra.local.mapping``): a :class:`Pump` holds one mapping
per workflow queue; ``once`` receives one batch and invokes the handler, deleting what it acknowledged,
``drain`` goes on until every queue is empty. Request counts come from botocore hooks (:class:`Requests`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from polos.app import App
from polos.aws import settings
from polos.publish.publishing import NewEvent, publish_events
from polos.runtime import worker

from helpers.apigw import LambdaContext, load_function
from infra.local.mapping import Delivery, EventSourceMapping, MappingSpec, drain
from infra.model import build_model

Invoke = Callable[[dict[str, Any]], Any]


def app_invoke(app: App) -> Invoke:
    """The worker for a test app (what ``functions/worker/app.py`` does for the configured app)."""
    return lambda event: worker.handle(event, app)


def example_invoke() -> Invoke:
    """The real Lambda entry point, ``functions/worker/app.handler`` (the example app)."""
    handler = load_function("worker").handler
    return lambda event: handler(event, LambdaContext())


def queue_arn(url: str) -> str:
    attributes = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


class Pump:
    """The event source mappings of an app's queues around one worker ``invoke``."""

    def __init__(self, app: App, urls: dict[str, str], invoke: Invoke | None = None) -> None:
        self.invoke = invoke or app_invoke(app)
        self.mappings = {
            queue.workflow_id: EventSourceMapping(
                MappingSpec.of(queue, urls[queue.workflow_id], queue_arn(urls[queue.workflow_id])),
                settings.sqs(),
                lambda event: self.invoke(event),
            )
            for queue in build_model(app).queues
        }

    def mapping(self, workflow_id: str, batch_size: int | None = None) -> EventSourceMapping:
        """The workflow's mapping; ``batch_size`` overrides its batch size (other groupings)."""
        mapping = self.mappings[workflow_id]
        if batch_size is None:
            return mapping
        spec = MappingSpec(workflow_id, mapping.spec.queue_url, mapping.spec.queue_arn, batch_size)
        return EventSourceMapping(spec, settings.sqs(), lambda event: self.invoke(event))

    def once(
        self, workflow_id: str, batch_size: int | None = None, redeliver: bool = True
    ) -> Delivery | None:
        """One invocation with what the queue holds now; ``redeliver`` makes failures visible at once."""
        mapping = self.mapping(workflow_id, batch_size)
        delivery = mapping.poll(wait_seconds=0, flush=True)
        if delivery is not None and redeliver and delivery.failed:
            mapping.release(delivery.failed)
        return delivery

    def drain(self, *workflow_ids: str, timeout: float = 30.0) -> list[Delivery]:
        """Deliver until the queues are empty, failures redelivered at once (dead-lettering still applies)."""
        chosen = [self.mappings[wf] for wf in (workflow_ids or self.mappings)]
        return drain(chosen, redeliver_failures=True, timeout=timeout)


def publish(topic: str, *datas: dict[str, Any]) -> list[Any]:
    """Store events and fan them out to the subscribed workflows' queues (the publish path)."""
    return publish_events(topic, [NewEvent(id=None, data=data) for data in datas]).events


def queue_depth(url: str) -> int:
    """Messages on a queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
    return sum(int(value) for value in attributes.values())


def dlq_url(url: str) -> str:
    return url + "-dlq"


class Requests:
    """DynamoDB requests seen through botocore hooks: calls per operation and items written."""

    READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.written_items = 0
        self._lock = threading.Lock()

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """``before-parameter-build``: once per API call, with the call's own parameters."""
        name = model.name
        items = 0
        if name == "TransactWriteItems":
            items = len(params["TransactItems"])
        elif name == "BatchWriteItem":
            items = sum(len(requests) for requests in params["RequestItems"].values())
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            items = 1
        with self._lock:
            self.calls[name] += 1
            self.written_items += items

    @property
    def reads(self) -> int:
        return sum(count for name, count in self.calls.items() if name in self.READS)

    @property
    def write_calls(self) -> int:
        return sum(count for name, count in self.calls.items() if name not in self.READS)

    def reset(self) -> None:
        self.calls.clear()
        self.written_items = 0


@contextmanager
def count_requests() -> Iterator[Requests]:
    """Count the DynamoDB requests made inside the block (on the process-wide client)."""
    requests = Requests()
    events = settings.dynamodb().meta.events
    events.register("before-parameter-build.dynamodb.*", requests._seen)
    try:
        yield requests
    finally:
        events.unregister("before-parameter-build.dynamodb.*", requests._seen)


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """Serialise moto's handling of DynamoDB requests made inside the block.

    DynamoDB applies each request (a conditional write, a transaction) atomically; in-process moto evaluates
    the condition and writes in steps that two threads can interleave. Concurrency tests need DynamoDB's
    semantics, so every request is answered under one lock, exactly as moto would answer it.
    """
    from moto.core.models import botocore_stubber

    lock = threading.Lock()

    def answer(**kwargs: Any) -> Any:
        with lock:
            return botocore_stubber(**kwargs)

    events = settings.dynamodb().meta.events
    events.register_first("before-send.dynamodb", answer)
    try:
        yield
    finally:
        events.unregister("before-send.dynamodb", answer)


@contextmanager
def answer_lost(operation: str, nth: int) -> Iterator[list[int]]:
    """The ``nth`` ``operation`` request reaches moto and is applied, then its answer is lost.

    The request raises ``ConnectionClosedError`` after moto answered, exactly as a connection dropped on the
    way back would: botocore's retry handler sends the same request again. Yields the calls seen so far.
    """
    from botocore.exceptions import ConnectionClosedError
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__
    seen = [0]

    def answer(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        response = original(self, event_name, request, **kwargs)
        if event_name.endswith("." + operation):
            seen[0] += 1
            if seen[0] == nth:
                raise ConnectionClosedError(endpoint_url=request.url)
        return response

    BotocoreStubber.__call__ = answer  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]

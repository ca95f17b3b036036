"""``@workflow``: bare and with arguments, and every rule it checks at decoration time."""

import asyncio
from typing import Any

import pytest
from polos import (
    BatchEventPayload,
    EventPayload,
    PayloadEvent,
    Workflow,
    WorkflowContext,
    WorkflowHandle,
    workflow,
)
from polos.app import App
from polos.errors import PayloadValidationError, WorkflowDefinitionError
from pydantic import BaseModel, Field


class Order(BaseModel):
    order_id: str
    total: float


def rejects(match: str, **options: Any) -> None:
    """Decorating a valid handler with ``options`` fails with a message matching ``match``."""

    async def handler(ctx: WorkflowContext, payload: Any) -> None:
        return None

    with pytest.raises(WorkflowDefinitionError, match=match):
        workflow(**options)(handler)


# ---- bare and with arguments ----------------------------------------------------------------------


def test_bare_decorator_uses_the_function_name_and_docstring() -> None:
    @workflow
    async def bare_invoked(ctx: WorkflowContext, order: Order) -> dict[str, str]:
        """Create an order."""
        return {"id": order.order_id}

    assert isinstance(bare_invoked, Workflow)
    assert bare_invoked.id == "bare_invoked"
    assert bare_invoked.description == "Create an order."
    assert bare_invoked.topic is None
    assert bare_invoked.batch_size == 1 and bare_invoked.batch_timeout_seconds is None
    assert not bare_invoked.is_batch
    assert bare_invoked.payload_type is Order
    assert bare_invoked.build_payload({"order_id": "o1", "total": "9.5"}) == Order(order_id="o1", total=9.5)


def test_decorator_with_arguments() -> None:
    @workflow(id="with-args", description="explicit", trigger_on_event="order.created")
    async def with_args(ctx: WorkflowContext, payload: EventPayload) -> None:
        """Ignored: the description is given."""

    assert with_args.id == "with-args"
    assert with_args.description == "explicit"
    assert with_args.topic == "order/created"  # canonical form
    assert not with_args.is_batch
    assert with_args.payload_type is EventPayload


def test_empty_parentheses_work_like_bare() -> None:
    @workflow()
    async def empty_parens(ctx: WorkflowContext) -> int:
        return 1

    assert empty_parens.id == "empty_parens"
    assert empty_parens.takes_payload is False


def test_batch_workflow_settings() -> None:
    @workflow(id="batch-ok", trigger_on_event="analytics/events", batch_size=10, batch_timeout_seconds=30)
    async def batch_ok(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    assert batch_ok.is_batch
    assert (batch_ok.batch_size, batch_ok.batch_timeout_seconds) == (10, 30)
    assert batch_ok.payload_type is BatchEventPayload


def test_a_window_alone_makes_a_batch_workflow() -> None:
    @workflow(id="window-only", trigger_on_event="a/b", batch_timeout_seconds=0)
    async def window_only(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    assert window_only.is_batch and window_only.batch_size == 1


def test_limits_at_their_edges_are_accepted() -> None:
    @workflow(id="edge-max", trigger_on_event="a/b", batch_size=10_000, batch_timeout_seconds=300)
    async def edge_max(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    @workflow(id="edge-unwindowed", trigger_on_event="a/b", batch_size=10)
    async def edge_unwindowed(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    @workflow(id="edge-window-one", trigger_on_event="a/b", batch_size=11, batch_timeout_seconds=1)
    async def edge_window_one(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    assert edge_max.batch_size == 10_000 and edge_unwindowed.is_batch and edge_window_one.is_batch


def test_unannotated_payload_gets_the_event_shape() -> None:
    @workflow(id="untyped-single", trigger_on_event="a/b")
    async def untyped_single(ctx, payload):  # type: ignore[no-untyped-def]
        return None

    @workflow(id="untyped-batch", trigger_on_event="a/b", batch_size=2, batch_timeout_seconds=5)
    async def untyped_batch(ctx, payload):  # type: ignore[no-untyped-def]
        return None

    @workflow(id="untyped-invoked")
    async def untyped_invoked(ctx, payload):  # type: ignore[no-untyped-def]
        return None

    assert untyped_single.payload_type is EventPayload
    assert untyped_batch.payload_type is BatchEventPayload
    assert untyped_invoked.payload_type is None
    assert untyped_invoked.build_payload({"any": "thing"}) == {"any": "thing"}


def test_dict_and_payload_event_annotations() -> None:
    @workflow(id="dict-payload", trigger_on_event="a/b")
    async def dict_payload(ctx: WorkflowContext, payload: dict) -> None: ...  # type: ignore[type-arg]

    @workflow(id="payload-event", trigger_on_event="a/b")
    async def payload_event(ctx: WorkflowContext, payload: PayloadEvent) -> None: ...

    assert dict_payload.payload_type is dict
    assert payload_event.payload_type is EventPayload


def test_build_payload_failure_names_the_workflow_and_field() -> None:
    @workflow(id="typed-order")
    async def typed_order(ctx: WorkflowContext, order: Order) -> None: ...

    with pytest.raises(
        PayloadValidationError,
        match=r"payload of workflow 'typed-order' is invalid: payload.total: Field required$",
    ):
        typed_order.build_payload({"order_id": "o1"})


# ---- id -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["", "-leading-dash", "_leading_underscore", "has space", "dot.ted", "slash/ed", "é", "x" * 65]
)
def test_bad_ids(bad_id: str) -> None:
    rejects(r"workflow id .* is invalid: it must match \[A-Za-z0-9\]\[A-Za-z0-9_-\]\{0,63\}", id=bad_id)


def test_non_string_id() -> None:
    rejects(r"workflow id 42 is invalid", id=42)


def test_longest_id_is_accepted() -> None:
    long_id = "L" + "x" * 63

    @workflow(id=long_id)
    async def longest(ctx: WorkflowContext) -> None: ...

    assert longest.id == long_id


def test_duplicate_id_in_one_module_names_the_first_definition() -> None:
    @workflow(id="dup-in-module")
    async def first(ctx: WorkflowContext) -> None: ...

    async def second(ctx: WorkflowContext) -> None: ...

    with pytest.raises(
        WorkflowDefinitionError, match=r"'dup-in-module' is already used by .*first.*unique in an app"
    ):
        workflow(id="dup-in-module")(second)


def test_duplicate_id_across_modules_of_an_app() -> None:
    @workflow(id="dup-across")
    async def mine(ctx: WorkflowContext) -> None: ...

    async def theirs(ctx: WorkflowContext) -> None: ...

    theirs.__module__ = "some.other_module"
    other = workflow(id="dup-across")(theirs)
    with pytest.raises(WorkflowDefinitionError, match=r"'dup-across' is defined twice in app 'shop'"):
        App("shop", [mine, other])
    assert len(App("shop", [mine, mine])) == 1  # the same workflow twice is not a conflict


# ---- batch limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -1, 10_001])
def test_batch_size_out_of_range(size: int) -> None:
    rejects(
        rf"batch_size={size} is out of range; it must be 1 <= batch_size <= 10000",
        trigger_on_event="a/b",
        batch_size=size,
        batch_timeout_seconds=5,
    )


@pytest.mark.parametrize("size", [2.0, "5", True, None])
def test_batch_size_must_be_an_integer(size: object) -> None:
    rejects(r"batch_size must be an integer, got", trigger_on_event="a/b", batch_size=size)


@pytest.mark.parametrize("window", [-1, 301])
def test_batch_timeout_out_of_range(window: int) -> None:
    rejects(
        rf"batch_timeout_seconds={window} is out of range; it must be 0 <= batch_timeout_seconds <= 300",
        trigger_on_event="a/b",
        batch_size=2,
        batch_timeout_seconds=window,
    )


@pytest.mark.parametrize("window", [1.5, "30", False])
def test_batch_timeout_must_be_whole_seconds(window: object) -> None:
    rejects(
        r"batch_timeout_seconds must be a whole number of seconds",
        trigger_on_event="a/b",
        batch_timeout_seconds=window,
    )


@pytest.mark.parametrize("window", [None, 0])
def test_big_batches_need_a_window(window: int | None) -> None:
    rejects(
        rf"batch_size=11 needs batch_timeout_seconds >= 1 \(got {window}\); "
        "batches larger than 10 need a batching window",
        trigger_on_event="a/b",
        batch_size=11,
        batch_timeout_seconds=window,
    )


def test_batch_needs_a_trigger() -> None:
    rejects(r"batch_size/batch_timeout_seconds need trigger_on_event", batch_size=5, batch_timeout_seconds=5)
    rejects(r"batch_size/batch_timeout_seconds need trigger_on_event", batch_timeout_seconds=5)


# ---- trigger topic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", r"trigger_on_event must not be empty"),
        ("user//signup", r"trigger_on_event 'user//signup' is invalid"),
        ("user signup", r"trigger_on_event 'user signup' is invalid"),
        ("a" * 257, r"trigger_on_event is 257 characters long; at most 256"),
        (42, r"trigger_on_event must be a string, got int"),
    ],
)
def test_bad_trigger_topic(topic: object, message: str) -> None:
    rejects(r"workflow 'handler': " + message, trigger_on_event=topic)


# ---- handler shape --------------------------------------------------------------------------------


def test_handler_must_be_async() -> None:
    def sync_handler(ctx: WorkflowContext, payload: Any) -> None: ...

    with pytest.raises(
        WorkflowDefinitionError, match=r"needs an `async def` handler; .*sync_handler is not one"
    ):
        workflow(sync_handler)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match=r"needs an `async def` handler"):
        workflow(id="sync-handler")(sync_handler)  # type: ignore[arg-type]


def test_positional_id_is_a_clear_error() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"keyword arguments only .*'my-id'"):
        workflow("my-id")  # type: ignore[call-overload]


@pytest.mark.parametrize("arity", [0, 3])
def test_wrong_parameter_count(arity: int) -> None:
    namespace: dict[str, Any] = {}
    params = ", ".join(f"p{i}" for i in range(arity))
    exec(f"async def handler({params}):\n    return None", namespace)
    with pytest.raises(WorkflowDefinitionError, match=r"must take \(ctx\) or \(ctx, payload\) as positional"):
        workflow(id=f"arity-{arity}")(namespace["handler"])


def test_keyword_only_payload_is_rejected() -> None:
    async def kw_only(ctx: WorkflowContext, *, payload: dict[str, Any]) -> None: ...

    with pytest.raises(
        WorkflowDefinitionError, match=r"as positional parameters, it takes \(ctx: .*, \*, payload"
    ):
        workflow(id="kw-only")(kw_only)


def test_event_payload_on_a_batch_workflow_is_rejected() -> None:
    async def wrong(ctx: WorkflowContext, payload: EventPayload) -> None: ...

    with pytest.raises(
        WorkflowDefinitionError,
        match=r"'wrong-batch' is a batch workflow .* annotated EventPayload; annotate it BatchEventPayload",
    ):
        workflow(id="wrong-batch", trigger_on_event="a/b", batch_size=5, batch_timeout_seconds=5)(wrong)


def test_batch_payload_on_a_single_event_workflow_is_rejected() -> None:
    async def wrong(ctx: WorkflowContext, payload: BatchEventPayload) -> None: ...

    with pytest.raises(
        WorkflowDefinitionError,
        match=r"'wrong-single' receives one event per run but its payload is annotated BatchEventPayload",
    ):
        workflow(id="wrong-single", trigger_on_event="a/b")(wrong)


def test_unresolvable_annotation_is_a_clear_error() -> None:
    async def dangling(ctx: WorkflowContext, payload: "NoSuchModel") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(
        WorkflowDefinitionError, match=r"'dangling': cannot resolve the handler's annotations"
    ):
        workflow(id="dangling")(dangling)


def test_calling_a_workflow_runs_its_handler() -> None:
    @workflow(id="direct-call")
    async def direct_call(ctx: Any, order: Order) -> str:
        return f"{ctx}:{order.order_id}"

    @workflow(id="direct-call-no-payload")
    async def no_payload(ctx: Any) -> str:
        return str(ctx)

    assert asyncio.run(direct_call("ctx", Order(order_id="o9", total=1))) == "ctx:o9"
    assert asyncio.run(no_payload("ctx", None)) == "ctx"


class FakeClient:
    """Records what ``invoke`` / ``run`` send, answering like the API and the runs endpoint."""

    def __init__(self) -> None:
        self.started: list[tuple[str, Any, str | None]] = []

    async def start_workflow(
        self, workflow_id: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Any:
        self.started.append((workflow_id, payload, idempotency_key))
        return WorkflowHandle(run_id="run_1", workflow_id=workflow_id).bound(self)  # type: ignore[arg-type]

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return {"status": "completed", "result": {"run": run_id}}


class AliasedInput(BaseModel):
    user_id: str = Field(alias="userId")


def test_invoke_and_run_send_the_payload_as_json() -> None:
    @workflow(id="invokable")
    async def invokable(ctx: WorkflowContext, data: AliasedInput) -> None: ...

    client = FakeClient()
    handle = asyncio.run(invokable.invoke(client, AliasedInput(userId="u1"), idempotency_key="k1"))  # type: ignore[arg-type]
    assert handle.run_id == "run_1"
    assert client.started == [("invokable", {"userId": "u1"}, "k1")]
    assert asyncio.run(invokable.run(client, {"userId": "u2"}, timeout=5)) == {"run": "run_1"}  # type: ignore[arg-type]
    assert client.started[-1] == ("invokable", {"userId": "u2"}, None)


def test_invoke_refuses_a_payload_that_cannot_fit_before_sending() -> None:
    @workflow(id="invokable-strict")
    async def strict(ctx: WorkflowContext, data: AliasedInput) -> None: ...

    client = FakeClient()
    with pytest.raises(PayloadValidationError, match=r"payload.userId: Field required"):
        asyncio.run(strict.invoke(client, {"user": "x"}))  # type: ignore[arg-type]
    assert client.started == []

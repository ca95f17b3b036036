"""``@workflow``: declaring workflows, checking every rule at decoration time, and the registry."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from polos import flow_control, queues, schedules, state
from polos.aws import attempts
from polos.errors import (
    InvalidTopicError,
    PayloadValidationError,
    WorkflowDefinitionError,
    validation_summary,
)
from polos.payloads import BatchEventPayload, EventItem, EventPayload, SchedulePayload
from polos.queues import Queue
from polos.schedules import Schedule
from polos.topics import canonical_topic

if TYPE_CHECKING:
    from polos.client import ExecutionHandle, PolosClient
    from polos.context import WorkflowContext

Handler = Callable[..., Awaitable[Any]]

WORKFLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# The limits of an SQS event source mapping, which runs every workflow.
MAX_BATCH_SIZE = 10_000
MAX_BATCH_WINDOW_SECONDS = 300
MAX_UNWINDOWED_BATCH_SIZE = 10
# A run may wait 365 days (DESIGN §1b): its timeout may be a day more.
MAX_RUN_TIMEOUT_SECONDS = 366 * 24 * 3600


def run_timeout_problem(value: object, name: str = "run_timeout_seconds") -> str | None:
    """Why ``value`` is not a valid ``run_timeout_seconds`` (``None`` when it is)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number of seconds, got {value!r}"
    if not 1 <= value <= MAX_RUN_TIMEOUT_SECONDS:
        return f"{name}={value} is out of range; it must be 1 <= {name} <= {MAX_RUN_TIMEOUT_SECONDS}"
    return None


@dataclass(eq=False)
class Workflow:
    """A registered workflow. Call :meth:`invoke` / :meth:`run` to start it through the HTTP API."""

    fn: Handler
    id: str
    description: str | None
    topic: str | None
    batch_size: int
    batch_timeout_seconds: int | None
    schedule: Schedule | None = None
    # ``schedule=True``: schedules are made at run time (``polos.schedules.create``), none by default.
    schedulable: bool = False
    takes_payload: bool = True
    # Executions that may fail in a row for one message; ``None``: the deployment's (``POLOS_MAX_ATTEMPTS``).
    max_attempts: int | None = None
    # A run unfinished this long after its creation fails with ``RunTimeout`` (an invoke argument wins).
    run_timeout_seconds: int | None = None
    # ``ctx.state``'s model (``polos.WorkflowState``), started from ``initial_state`` or its defaults.
    state_schema: type[BaseModel] | None = None
    # Event flow control (``polos.flow_control``): the options as given, normalised; ``flow`` parsed.
    debounce: dict[str, Any] | None = None
    throttle: dict[str, Any] | None = None
    rate_limit: dict[str, Any] | None = None
    flow: tuple[flow_control.FlowLimit, ...] = ()
    # At most ``queue.concurrency_limit`` runs at once (per ``concurrency_key``, a dotted path into the
    # event); ``max_concurrency``: the event source mapping's maximum concurrency (see polos.queues).
    queue: Queue | None = None
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    # Its queued event runs start by ``sequence_id`` also ahead of their delivery (polos.publish.start_order):
    # ``True``, else ``None`` (not shown among the options).
    strict_order: bool | None = None
    _payload_type: Any = field(default=None, repr=False)
    _adapter: TypeAdapter[Any] | None = field(default=None, repr=False)
    _result_adapter: TypeAdapter[Any] | None = field(default=None, repr=False)  # built on first use

    @property
    def is_batch(self) -> bool:
        """Batch workflows receive a :class:`BatchEventPayload` of up to ``batch_size`` events."""
        return self.batch_size > 1 or self.batch_timeout_seconds is not None

    @property
    def payload_type(self) -> Any:
        """What the handler's payload is validated into."""
        return self._payload_type

    def build_payload(self, raw: Any) -> Any:
        """Validate ``raw`` (JSON-compatible data) into the handler's payload type."""
        if self._adapter is None:
            return raw
        try:
            return self._adapter.validate_python(raw)
        except ValidationError as exc:
            summary = validation_summary(exc, "payload")
            raise PayloadValidationError(f"payload of workflow {self.id!r} is invalid: {summary}") from exc

    async def __call__(self, ctx: WorkflowContext, payload: Any) -> Any:
        """Run the handler directly (unit tests of a handler's own logic)."""
        return await (self.fn(ctx, payload) if self.takes_payload else self.fn(ctx))

    def check_initial_state(self, initial_state: Any) -> dict[str, Any] | None:
        """``initial_state`` validated against ``state_schema``, as JSON data (``StateError`` if it does
        not fit; ``WorkflowDefinitionError`` when the workflow has no ``state_schema``)."""
        if not initial_state:  # None or {}: no state given
            return None
        if self.state_schema is None:
            raise WorkflowDefinitionError(
                f"workflow {self.id!r} has no state_schema: initial_state would be ignored"
            )
        built = state.build(self.id, self.state_schema, initial_state)
        dumped: dict[str, Any] = built.model_dump(mode="json")
        return dumped

    async def invoke(
        self,
        client: PolosClient,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        run_timeout_seconds: int | None = None,
        initial_state: BaseModel | dict[str, Any] | None = None,
        queue_name: str | None = None,
        queue_concurrency_limit: int | None = None,
        concurrency_key: str | None = None,
        **options: Any,
    ) -> ExecutionHandle:
        """Start a run through the HTTP API; returns a handle to await its result. ``queue_name`` runs it
        in that queue (``queue_concurrency_limit``: the limit of a queue named only here), at most the
        queue's limit at once per ``concurrency_key``; other ``options`` go to the HTTP API as given."""
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", by_alias=True)
        self.build_payload(payload)  # fail here, not in the worker, when the payload cannot fit
        if (problem := run_timeout_problem(run_timeout_seconds)) is not None:
            raise ValueError(problem)
        options |= {
            "run_timeout_seconds": run_timeout_seconds,
            "initial_state": self.check_initial_state(initial_state),
            "queue_name": queue_name,
            "queue_concurrency_limit": queue_concurrency_limit,
            "concurrency_key": concurrency_key,
        }
        given = {name: value for name, value in options.items() if value is not None}
        return await client.start_workflow(self.id, payload, idempotency_key=idempotency_key, **given)

    async def run(
        self,
        client: PolosClient,
        payload: Any = None,
        timeout: float = 600,  # noqa: ASYNC109 - DESIGN §1 names the parameter `timeout`
        **options: Any,
    ) -> Any:
        """Start a run and wait for its result (``WorkflowRunError`` if it fails), typed as the handler's
        return annotation declares it (a pydantic model comes back as that model)."""
        handle = await self.invoke(client, payload, **options)
        return self.build_result(await handle.result(client, timeout=timeout))

    def build_result(self, raw: Any) -> Any:
        """A run's JSON result as the handler's return annotation types it (unannotated: as it is)."""
        if self._result_adapter is None:
            try:
                annotation = typing.get_type_hints(self.fn).get("return", Any)
            except NameError:
                annotation = Any  # an annotation that cannot be resolved types nothing
            untyped = annotation is None or annotation is type(None)  # `-> None` types nothing
            self._result_adapter = TypeAdapter(Any if untyped else annotation)
        return self._result_adapter.validate_python(raw)


class _Registry:
    """Workflows by defining module, in definition order. An *app* is a module and its submodules."""

    def __init__(self) -> None:
        self._by_module: dict[str, dict[str, Workflow]] = {}

    def add(self, wf: Workflow) -> None:
        module = wf.fn.__module__
        in_module = self._by_module.setdefault(module, {})
        existing = in_module.get(wf.id)
        if existing is not None and existing.fn.__qualname__ != wf.fn.__qualname__:
            raise WorkflowDefinitionError(
                f"workflow id {wf.id!r} is already used by {module}.{existing.fn.__qualname__}; "
                "ids must be unique in an app"
            )
        in_module[wf.id] = wf  # re-executing a module (reload) replaces its own definitions

    def sibling(self, of: Workflow, workflow_id: str) -> Workflow | None:
        """The workflow ``workflow_id`` of ``of``'s app: its own module first, then its top-level package."""
        module = of.fn.__module__
        found = self._by_module.get(module, {}).get(workflow_id)
        if found is None:
            found = next((wf for wf in self.in_package(module.split(".")[0]) if wf.id == workflow_id), None)
        return found

    def in_package(self, package: str) -> list[Workflow]:
        """Workflows defined in ``package`` or any module below it."""
        return [
            wf
            for module, workflows in self._by_module.items()
            if module == package or module.startswith(package + ".")
            for wf in workflows.values()
        ]


registry = _Registry()


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _payload_type(fn: Handler, wf_id: str, is_batch: bool, event_triggered: bool, scheduled: bool) -> Any:
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2 or any(param.kind not in _POSITIONAL for param in params):
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: the handler must take (ctx) or (ctx, payload) as positional parameters, "
            f"it takes {inspect.signature(fn)}"
        )
    if len(params) == 1:
        return None
    try:
        annotation = typing.get_type_hints(fn).get(params[1].name, inspect.Parameter.empty)
    except NameError as exc:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: cannot resolve the handler's annotations: {exc}"
        ) from exc
    if annotation is inspect.Parameter.empty or annotation is Any:
        if is_batch:
            return BatchEventPayload
        if scheduled:
            return SchedulePayload
        return EventPayload if event_triggered else None
    payload_cls = annotation if isinstance(annotation, type) else typing.get_origin(annotation)
    is_batch_type = isinstance(payload_cls, type) and issubclass(payload_cls, BatchEventPayload)
    is_event_type = isinstance(payload_cls, type) and issubclass(payload_cls, EventItem)
    if is_batch and is_event_type:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r} is a batch workflow (batch_size/batch_timeout_seconds set) but its payload "
            f"is annotated {payload_cls.__name__}; annotate it BatchEventPayload"
        )
    if not is_batch and is_batch_type:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r} receives one event per run but its payload is annotated BatchEventPayload; "
            "set batch_size > 1 or batch_timeout_seconds to make it a batch workflow"
        )
    return annotation


def _check_limits(wf_id: str, batch_size: object, batch_timeout_seconds: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: batch_size must be an integer, got {batch_size!r}"
        )
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: batch_size={batch_size} is out of range; "
            f"it must be 1 <= batch_size <= {MAX_BATCH_SIZE}"
        )
    if batch_timeout_seconds is not None:
        if isinstance(batch_timeout_seconds, bool) or not isinstance(batch_timeout_seconds, int):
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: batch_timeout_seconds must be a whole number of seconds, "
                f"got {batch_timeout_seconds!r}"
            )
        if not 0 <= batch_timeout_seconds <= MAX_BATCH_WINDOW_SECONDS:
            raise WorkflowDefinitionError(
                f"workflow {wf_id!r}: batch_timeout_seconds={batch_timeout_seconds} is out of range; "
                f"it must be 0 <= batch_timeout_seconds <= {MAX_BATCH_WINDOW_SECONDS}"
            )
    windowless = batch_timeout_seconds is None or batch_timeout_seconds < 1
    if batch_size > MAX_UNWINDOWED_BATCH_SIZE and windowless:
        raise WorkflowDefinitionError(
            f"workflow {wf_id!r}: batch_size={batch_size} needs batch_timeout_seconds >= 1 "
            f"(got {batch_timeout_seconds!r}); batches larger than {MAX_UNWINDOWED_BATCH_SIZE} "
            "need a batching window"
        )


def _check_max_attempts(wf_id: str, max_attempts: object) -> None:
    problem = None if max_attempts is None else attempts.range_problem(max_attempts)
    if problem is not None:
        raise WorkflowDefinitionError(f"workflow {wf_id!r}: {problem}")


def _define(
    fn: Handler,
    wf_id: str | None,
    description: str | None,
    trigger_on_event: str | None,
    batch_size: int,
    batch_timeout_seconds: int | None,
    schedule: str | dict[str, str] | bool | None = None,
    max_attempts: int | None = None,
    run_timeout_seconds: int | None = None,
    state_schema: type[BaseModel] | None = None,
    flow: dict[str, object] | None = None,
    queue: str | Queue | dict[str, int] | None = None,
    concurrency_key: str | None = None,
    max_concurrency: int | None = None,
    strict_order: bool = False,
) -> Workflow:
    if not callable(fn):
        raise WorkflowDefinitionError(
            f"@workflow takes keyword arguments only (e.g. @workflow(id=...)); "
            f"got {fn!r} as a positional argument"
        )
    if not inspect.iscoroutinefunction(fn):
        name = getattr(fn, "__qualname__", repr(fn))
        raise WorkflowDefinitionError(f"@workflow needs an `async def` handler; {name} is not one")
    resolved_id = fn.__name__ if wf_id is None else wf_id
    if not isinstance(resolved_id, str) or not WORKFLOW_ID.fullmatch(resolved_id):
        raise WorkflowDefinitionError(
            f"workflow id {resolved_id!r} is invalid: it must match [A-Za-z0-9][A-Za-z0-9_-]{{0,63}}"
        )
    _check_limits(resolved_id, batch_size, batch_timeout_seconds)
    _check_max_attempts(resolved_id, max_attempts)
    if (problem := run_timeout_problem(run_timeout_seconds)) is not None:
        raise WorkflowDefinitionError(f"workflow {resolved_id!r}: {problem}")
    schema = state.check_schema(resolved_id, state_schema)
    topic = None
    if trigger_on_event is not None:
        try:
            topic = canonical_topic(trigger_on_event, field="trigger_on_event")
        except InvalidTopicError as exc:
            raise WorkflowDefinitionError(f"workflow {resolved_id!r}: {exc}") from None
    is_batch = batch_size > 1 or batch_timeout_seconds is not None
    if is_batch and topic is None:
        raise WorkflowDefinitionError(
            f"workflow {resolved_id!r}: batch_size/batch_timeout_seconds need trigger_on_event "
            "(batches are of events)"
        )
    parsed_schedule = None
    schedulable = schedule is True  # schedules made at run time only, none by default
    if schedule is not None and schedule is not False:
        if topic is not None:
            raise WorkflowDefinitionError(
                f"workflow {resolved_id!r}: a scheduled workflow is not also event-triggered; "
                "give it schedule or trigger_on_event, not both"
            )
        if schedule is not True:
            parsed_schedule = schedules.parse(schedule, resolved_id)
    scheduled = schedulable or parsed_schedule is not None
    triggered = topic is not None
    limits = {
        option: flow_control.parse(resolved_id, option, raw, event_triggered=triggered, batch=is_batch)
        for option, raw in (flow or {}).items()
    }
    shown = {option: None if limit is None else limit.as_dict() for option, limit in limits.items()}
    payload_type = _payload_type(fn, resolved_id, is_batch, topic is not None, scheduled)
    resolved_queue = queues.resolve(resolved_id, queue)
    queues.check_options(
        resolved_id, resolved_queue, concurrency_key, max_concurrency, event=topic is not None, batch=is_batch
    )
    queues.check_strict_order(
        resolved_id,
        strict_order,
        resolved_queue,
        event=topic is not None,
        batch=is_batch,
        flow=any(limit is not None for limit in limits.values()),
    )
    wf = Workflow(
        fn=fn,
        id=resolved_id,
        description=description if description is not None else inspect.getdoc(fn),
        topic=topic,
        batch_size=batch_size,
        batch_timeout_seconds=batch_timeout_seconds,
        schedule=parsed_schedule,
        schedulable=schedulable,
        takes_payload=len(inspect.signature(fn).parameters) == 2,
        max_attempts=max_attempts,
        run_timeout_seconds=run_timeout_seconds,
        state_schema=schema,
        debounce=shown.get("debounce"),
        throttle=shown.get("throttle"),
        rate_limit=shown.get("rate_limit"),
        flow=tuple(limit for limit in limits.values() if limit is not None),
        queue=resolved_queue,
        concurrency_key=concurrency_key,
        max_concurrency=max_concurrency,
        strict_order=True if strict_order else None,
        _payload_type=payload_type,
        _adapter=None if payload_type is None else TypeAdapter(payload_type),
    )
    registry.add(wf)
    return wf


@overload
def workflow(fn: Handler, /) -> Workflow: ...


@overload
def workflow(
    *,
    id: str | None = None,
    description: str | None = None,
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout_seconds: int | None = None,
    schedule: str | dict[str, str] | bool | None = None,
    max_attempts: int | None = None,
    run_timeout_seconds: int | None = None,
    state_schema: type[BaseModel] | None = None,
    debounce: dict[str, Any] | None = None,
    throttle: dict[str, Any] | None = None,
    rate_limit: dict[str, Any] | None = None,
    queue: str | Queue | dict[str, int] | None = None,
    concurrency_key: str | None = None,
    max_concurrency: int | None = None,
    strict_order: bool = False,
) -> Callable[[Handler], Workflow]: ...


def workflow(
    fn: Handler | None = None,
    /,
    *,
    id: str | None = None,
    description: str | None = None,
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout_seconds: int | None = None,
    schedule: str | dict[str, str] | bool | None = None,
    max_attempts: int | None = None,
    run_timeout_seconds: int | None = None,
    state_schema: type[BaseModel] | None = None,
    debounce: dict[str, Any] | None = None,
    throttle: dict[str, Any] | None = None,
    rate_limit: dict[str, Any] | None = None,
    queue: str | Queue | dict[str, int] | None = None,
    concurrency_key: str | None = None,
    max_concurrency: int | None = None,
    strict_order: bool = False,
) -> Workflow | Callable[[Handler], Workflow]:
    """Declare a durable workflow: ``@workflow`` or ``@workflow(id=..., trigger_on_event=..., ...)``."""
    if fn is not None:
        return _define(fn, None, None, None, 1, None)

    def decorate(handler: Handler) -> Workflow:
        return _define(
            handler,
            id,
            description,
            trigger_on_event,
            batch_size,
            batch_timeout_seconds,
            schedule,
            max_attempts,
            run_timeout_seconds,
            state_schema,
            {"debounce": debounce, "throttle": throttle, "rate_limit": rate_limit},
            queue,
            concurrency_key,
            max_concurrency,
            strict_order,
        )

    return decorate

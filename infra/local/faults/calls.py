"""The functions' AWS calls under faults: each invocation of a local function runs as that function (a
context variable, which ``asyncio.to_thread`` carries along), and botocore hooks installed once per process
answer its DynamoDB and SQS requests with AWS's refusals (``limits``) and throttles (``throttle``) before
they reach moto. Calls made outside a function (the harness, the event source mapping's receives, which are
AWS's own) pass untouched. (``iam`` has hooks of its own: :mod:`infra.local.faults.iam`.)
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.handlers import BUILTIN_HANDLERS, REGISTER_FIRST

from infra.local.faults import limits
from infra.local.faults.answers import error_answer
from infra.local.faults.injector import Injector
from infra.local.faults.throttle import ThrottleFault
from infra.model import AppModel, FunctionSpec

Json = dict[str, Any]
Invoke = Callable[..., Any]


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    extra: Json


class CallFaults:
    """The faults of one stack that strike AWS calls, and what each function's call is answered."""

    def __init__(self, injector: Injector, model: AppModel) -> None:
        faults = injector.faults
        self._injector = injector
        index_keys = {index.name: index.hash_key for table in model.tables for index in table.indexes}
        self.throttle = (
            ThrottleFault(injector, faults.throttle, lambda table, index: index_keys.get(index, "pk"))
            if faults.throttle is not None
            else None
        )
        self.limits = faults.limits

    def refusal(self, function: FunctionSpec, service: str, operation: str, params: Json) -> Refusal | None:
        if self.limits and service == "sqs":
            refused = limits.sqs_refusal(operation, params)
            if refused is not None:
                self._injector.injected("limits", f"{function.logical_id} sqs:{operation}: {refused[1]}")
                return Refusal(refused[0], refused[1], {})
        if self.throttle is not None:
            throttle = self.throttle.check(service, operation, params)
            if throttle is not None:
                return Refusal(throttle.code, throttle.message, throttle.extra)
        return None

    def answered(self, service: str, operation: str, params: Json, parsed: Json) -> None:
        if self.throttle is not None and service == "dynamodb":
            self.throttle.charge_reads(operation, params, parsed)

    def as_function(self, function: FunctionSpec, invoke: Invoke) -> Invoke:
        """``invoke`` run as ``function``: its AWS calls meet the faults, its response Lambda's limit."""
        install()

        def invoke_as(event: dict[str, Any], *args: Any) -> Any:
            token = _running.set((function, self))
            try:
                result = invoke(event, *args)
            finally:
                _running.reset(token)
            if self.limits:
                try:
                    limits.check_response(function.logical_id, result)
                except limits.ResponseTooLarge as exc:
                    self._injector.injected("limits", str(exc))
                    raise
            return result

        return invoke_as


# --- botocore hooks (installed once per process; idle outside a function's invocation) -----------------

_running: contextvars.ContextVar[tuple[FunctionSpec, CallFaults] | None] = contextvars.ContextVar(
    "polos_faults_running", default=None
)
_call = threading.local()  # the API call being made on this thread: (service, operation, params)
_installed = False
_install_lock = threading.Lock()


def _service(model: Any) -> str:
    return str(model.service_model.endpoint_prefix)


def _remember(params: Json, model: Any, **_: Any) -> None:
    _call.current = (_service(model), model.name, params) if _running.get() is not None else None


def _answer(request: Any, **_: Any) -> Any:
    running, current = _running.get(), getattr(_call, "current", None)
    if running is None or current is None:
        return None
    function, faults = running
    service, operation, params = current
    refusal = faults.refusal(function, service, operation, params)
    if refusal is None:
        return None
    return error_answer(request.url, service, refusal.code, refusal.message, **refusal.extra)


def _after(parsed: Json, model: Any, **_: Any) -> None:
    running, current = _running.get(), getattr(_call, "current", None)
    if running is None or current is None or "Error" in parsed:
        return
    running[1].answered(current[0], current[1], current[2], parsed)


def install() -> None:
    """Register the hooks with every botocore session made from now on (the local stack makes its clients
    after this); idempotent."""
    global _installed
    with _install_lock:
        if _installed:
            return
        BUILTIN_HANDLERS.append(("before-parameter-build", _remember))
        BUILTIN_HANDLERS.append(("before-send", _answer, REGISTER_FIRST))
        BUILTIN_HANDLERS.append(("after-call", _after))
        _installed = True

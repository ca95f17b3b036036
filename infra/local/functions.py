"""The app's Lambda functions, run in this process: the very handlers the template deploys."""

from __future__ import annotations

import contextvars
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.typing import LambdaContext

from infra.local.aws import ACCOUNT_ID, REGION
from infra.model import FunctionSpec

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"

Handler = Callable[[dict[str, Any], LambdaContext], Any]
T = TypeVar("T")

# The logical id of the function whose code is running (None: the stack itself, a mapping, a test): whose
# role authorises the AWS calls made meanwhile (the ``iam`` fault, infra/local/faults/iam.py).
current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("polos_function", default=None)


def as_function(spec: FunctionSpec, call: Callable[[], T]) -> T:
    """``call()`` as the code of ``spec``'s function: its AWS calls are that function's."""
    token = current_function.set(spec.logical_id)
    try:
        return call()
    finally:
        current_function.reset(token)


class LocalContext(LambdaContext):
    """What Lambda passes as ``context``: names, request id and the time left before the timeout."""

    def __init__(self, spec: FunctionSpec, request_id: str | None = None) -> None:
        self._function_name = spec.logical_id
        self._function_version = "$LATEST"
        self._invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{spec.logical_id}"
        self._memory_limit_in_mb = spec.memory_mb
        self._aws_request_id = request_id or str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{spec.logical_id}"
        self._log_stream_name = "local"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: FunctionSpec, functions_dir: Path = FUNCTIONS_DIR) -> Handler:
    """Import ``spec.handler`` (``dir/module.attr``, relative to the code directory) like Lambda does."""
    module_path, _, attr = spec.handler.rpartition(".")
    path = functions_dir / f"{module_path}.py"
    if not path.is_file():
        raise FileNotFoundError(f"handler {spec.handler!r} of {spec.logical_id}: {path} does not exist")
    if str(functions_dir) not in sys.path:
        sys.path.insert(0, str(functions_dir))  # Lambda's code directory is on the path (e.g. `workflows`)
    name = "polos_local_" + module_path.replace("/", "_")
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    handler: Handler = getattr(module, attr)
    return handler


class LocalFunction:
    """One deployed function: invoking it calls its handler with a fresh :class:`LocalContext`.

    A ``serial`` function runs one invocation at a time, like a function with one execution environment:
    Powertools' HTTP resolver keeps the current request in a class attribute (``BaseRouter.current_event``),
    so two API invocations at once in one process would read each other's request.
    """

    def __init__(self, spec: FunctionSpec, handler: Handler, *, serial: bool) -> None:
        self.spec = spec
        self._handler = handler
        self._lock = threading.Lock() if serial else None

    @classmethod
    def load(cls, spec: FunctionSpec, *, serial: bool) -> LocalFunction:
        return cls(spec, load_handler(spec), serial=serial)

    def invoke(self, event: dict[str, Any], request_id: str | None = None) -> Any:
        """Call the handler with ``event`` (exceptions propagate, as a failed invocation)."""
        if self._lock is None:
            return as_function(self.spec, lambda: self._handler(event, LocalContext(self.spec, request_id)))
        with self._lock:
            return as_function(self.spec, lambda: self._handler(event, LocalContext(self.spec, request_id)))

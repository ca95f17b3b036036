"""One app's local stack: its tables, queues and manifest, its functions, the gateway and the mappings.

Everything comes from the infrastructure model (``infra/model.py``) that the template is rendered from,
so the local stack and the cloud never drift. The stack talks to whatever AWS endpoint boto3 is set up
for: the embedded moto server under ``polos dev``, moto's in-process mock under ``polos.testing``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polos.api.keys import KeyStore
from polos.app import App, load_app
from polos.aws import attempts, settings
from polos.aws.attempts import DEFAULT_MAX_ATTEMPTS
from polos.errors import WorkflowDefinitionError

from infra.local.apigw import ApiGateway
from infra.local.aws import ACCOUNT_ID, REGION, apply_environment
from infra.local.faults.calls import CallFaults
from infra.local.faults.calls import install as install_fault_hooks
from infra.local.faults.config import AwsFaults
from infra.local.faults.iam import IamEnforcement, install_iam_enforcement
from infra.local.faults.injector import Injector
from infra.local.faults.queues import QueueFaults
from infra.local.functions import FUNCTIONS_DIR, LocalFunction, as_function
from infra.local.mapping import EventSourceMapping, MappingSpec
from infra.local.resources import LocalNames, create_resources
from infra.local.schedules import LocalSchedules
from infra.model import (
    DEFAULT_QUEUE_NAME_PREFIX,
    AppModel,
    FunctionSpec,
    build_model,
)

DEFAULT_APP = "workflows"  # the example app, functions/workflows/
DEFAULT_VISIBILITY_TIMEOUT = 30
MIN_VISIBILITY_TIMEOUT = 2
MAX_VISIBILITY_TIMEOUT = 43_200  # SQS's limit (12 h)
SQS_URL = f"https://sqs.{REGION}.amazonaws.com"  # moto's queue URLs when mocked in-process

Invoke = Callable[[dict[str, Any]], Any]
AnyInvoke = Callable[..., Any]  # a function's invoke (the API's also takes a request id)


class StackError(ValueError):
    """An option or the app cannot make a stack; the message says which and why."""


@dataclass(frozen=True)
class StackOptions:
    """Failed deliveries come back after ``visibility_timeout`` s; a message is received at most
    ``max_attempts`` executions of a message's run may fail in a row before the run is failed and
    dead-lettered (a workflow's own ``max_attempts`` wins; see ``polos.runtime.dead_letters``)."""

    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    aws_faults: AwsFaults = field(default_factory=AwsFaults)  # off unless asked for (`--aws-faults`)

    def __post_init__(self) -> None:
        if not MIN_VISIBILITY_TIMEOUT <= self.visibility_timeout <= MAX_VISIBILITY_TIMEOUT:
            raise StackError(
                f"visibility timeout must be {MIN_VISIBILITY_TIMEOUT} to {MAX_VISIBILITY_TIMEOUT} seconds, "
                f"got {self.visibility_timeout} (a run's lease is 1 s shorter, so it ends before redelivery)"
            )
        problem = attempts.range_problem(self.max_attempts)
        if problem is not None:
            raise StackError(problem)

    @property
    def lease_seconds(self) -> int:
        """A run's lease (the worker's timeout in the cloud): it lapses before the message is redelivered."""
        return self.visibility_timeout - 1

    def queue_visibility(self, model: AppModel) -> dict[str, int]:
        """Per queue, like the template: the timeout plus the batching window messages wait in."""
        return {
            q.workflow_id: self.visibility_timeout + (q.batching_window_seconds or 0) for q in model.queues
        }


def resolve_app(target: str | None) -> tuple[App, str]:
    """Load the app (a dotted module importable from the current directory, or a ``.py`` path; the example
    app when ``None``) and return it with the name the worker loads it by (``POLOS_APP``)."""
    given = target
    if target is None:
        if str(FUNCTIONS_DIR) not in sys.path:
            sys.path.insert(0, str(FUNCTIONS_DIR))
        target = DEFAULT_APP
    elif target.endswith(".py") or "/" in target or "\\" in target:
        if not Path(target).is_file():
            raise StackError(f"app file {target!r} does not exist")
        target = str(Path(target).resolve())  # the worker imports the very same file, from any directory
    try:
        app = load_app(target)
    except WorkflowDefinitionError as exc:
        raise StackError(str(exc)) from exc  # it names the module or file and the problem
    except (ImportError, SyntaxError) as exc:
        raise StackError(f"cannot load the app {given or target!r}: {type(exc).__name__}: {exc}") from exc
    if len(app) == 0:
        raise StackError(
            f"app {given or target!r} defines no workflows (no @workflow in it or its submodules)"
        )
    return app, target


class LocalStack:
    """The resources and functions of one app (the caller points boto3 at moto first)."""

    def __init__(
        self,
        app: App,
        model: AppModel,
        names: LocalNames,
        urls: dict[str, str],
        options: StackOptions,
        worker: Invoke,
        previous_env: dict[str, str | None],
    ) -> None:
        self.app = app
        self.model = model
        self.names = names
        self.urls = urls
        self.options = options
        self._previous_env = previous_env
        # `--aws-faults`: the functions' AWS calls and the mappings meet AWS's faults, counted here.
        self.faults = Injector(options.aws_faults)
        calls = CallFaults(self.faults, model) if options.aws_faults.enabled else None
        worker_spec = model.function("consumes_queues")
        self.worker = self._as(
            calls, worker_spec, lambda event: as_function(worker_spec, lambda: worker(event))
        )
        self.iam: IamEnforcement | None = None
        if options.aws_faults.iam:  # each function's calls checked against its role in template.yaml
            tables = {spec.logical_id: names.table(spec) for spec in model.tables}
            clients = (settings.dynamodb(), settings.sqs(), settings.scheduler())
            self.iam = install_iam_enforcement(
                model, tables, names.prefix, clients, report=self.faults.injected
            )
        self.api = LocalFunction.load(model.function("serves_api"), serial=True)
        self.gateway = ApiGateway(model.routes, api=self._as(calls, self.api.spec, self.api.invoke))
        self.timers = LocalFunction.load(model.function("sweeps_timers"), serial=True)
        self.invoke_timers = self._as(calls, self.timers.spec, self.timers.invoke)
        self.schedules = LocalSchedules(model)
        sqs = settings.sqs()
        self.mappings = [
            EventSourceMapping(
                MappingSpec.of(queue, urls[queue.workflow_id], self._queue_arn(urls[queue.workflow_id])),
                sqs,
                self.worker,
                faults=QueueFaults(self.faults, queue.workflow_id) if calls is not None else None,
            )
            for queue in model.queues
        ]

    @staticmethod
    def _as(calls: CallFaults | None, spec: FunctionSpec, invoke: AnyInvoke) -> AnyInvoke:
        """``invoke`` as the function ``spec`` (its calls meet the faults), or as it is without faults."""
        return invoke if calls is None else calls.as_function(spec, invoke)

    @classmethod
    def create(
        cls,
        app: App,
        *,
        state_dir: Path,
        endpoint_url: str | None,
        app_target: str | None = None,
        options: StackOptions | None = None,
        worker: Invoke | None = None,
        prefix: str = DEFAULT_QUEUE_NAME_PREFIX,
    ) -> LocalStack:
        """Set the environment the functions read (restored by :meth:`close`), create the app's tables and
        queues on moto (at ``endpoint_url``, or in-process when ``None``) and write its manifest to
        ``state_dir``. ``worker`` defaults to the worker function, which loads the app named
        ``app_target``; pass ``worker`` to run an :class:`App` object instead."""
        options = options or StackOptions()
        model = build_model(app)
        names = LocalNames(
            prefix=prefix,
            queue_url_prefix=f"{endpoint_url or SQS_URL}/{ACCOUNT_ID}/{prefix}",
            manifest_path=str(state_dir / "polos_manifest.json"),
        )
        env: dict[str, str | None] = {
            **names.env(model),
            settings.ENV_LEASE_SECONDS: str(options.lease_seconds),
            settings.ENV_MAX_ATTEMPTS: str(options.max_attempts),
            settings.ENV_APP: app_target,
            "POWERTOOLS_SERVICE_NAME": "polos",
            # No CloudWatch here, and Powertools' metric set is not shared safely across the mapping threads.
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        previous = apply_environment(env)
        if options.aws_faults.enabled:
            install_fault_hooks()  # before the clients are made: they take botocore's handlers then
        settings.reset()  # once, with the whole environment in place: making clients costs ~0.5 s
        try:
            urls = create_resources(
                model,
                names,
                settings.dynamodb(),
                settings.sqs(),
                visibility_timeout=options.visibility_timeout,
                max_attempts=options.max_attempts,
                visibility_timeouts=options.queue_visibility(model),
            )
            if any(queue.schedulable for queue in model.queues):
                settings.scheduler().create_schedule_group(Name=names.schedule_group)
            for workflow_id, url in urls.items():
                if url != names.queue_url_prefix + workflow_id:
                    raise StackError(
                        f"moto named the queue of {workflow_id!r} {url}, not {names.queue_url_prefix}…"
                    )
            if worker is None:
                worker = LocalFunction.load(model.function("consumes_queues"), serial=False).invoke
                # Like a Lambda init: the worker imports the app now, once, not in the first pollers at once.
                worker({"Records": []})
            return cls(app, model, names, urls, options, worker, previous)
        except BaseException:
            apply_environment(previous)
            settings.reset()
            raise

    @staticmethod
    def _queue_arn(url: str) -> str:
        answer = settings.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return answer["Attributes"]["QueueArn"]

    def sweep_timers(self, sweep: Callable[[], int]) -> int:
        """``sweep`` (the timers function's code) run as the timers function."""
        return as_function(self.model.function("sweeps_timers"), sweep)

    def create_api_key(self, key: str | None = None, name: str = "polos dev") -> str:
        """Store an API key (hashed, like any key): ``key`` if given, else a new one; returns the key."""
        try:
            return KeyStore().create(name, key)[1]
        except ValueError as exc:
            raise StackError(f"API key: {exc}") from None

    def dlq_url(self, workflow_id: str) -> str:
        return self.urls[workflow_id] + "-dlq"

    def close(self) -> None:
        """Restore the environment the stack changed."""
        if self.iam is not None:
            self.iam.uninstall()
        apply_environment(self._previous_env)
        settings.reset()

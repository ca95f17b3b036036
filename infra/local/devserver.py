"""The whole local stack as a server (``polos dev``, ``polos demo``): moto, the app's resources and
functions, the HTTP endpoint and the event source mappings, started and stopped together."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from polos.api import costs

from infra.local.aws import MotoServer, apply_environment, fake_credentials
from infra.local.devstate import DevState
from infra.local.mapping import Pollers
from infra.local.metering import SessionMeter
from infra.local.server import GatewayServer, RequestLog
from infra.local.stack import LocalStack, StackError, StackOptions, resolve_app
from infra.local.ticker import Ticker

STOP_TIMEOUT_SECONDS = 5.0


class DevServer:
    """Start with :meth:`start`; then ``url`` and ``api_key`` are set. :meth:`stop` ends everything."""

    def __init__(
        self,
        *,
        app_target: str | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
        api_key: str | None = None,
        options: StackOptions | None = None,
        request_log: RequestLog | None = None,
        before_serving: Callable[[], None] | None = None,
        state_file: Path | None = None,
        ledger_file: Path | None = None,
    ) -> None:
        self._app_target = app_target
        self._address = (host, port)
        self._api_key = api_key
        self._options = options or StackOptions()
        self._request_log = request_log
        self._before_serving = before_serving  # e.g. routing the functions' logs, once they are imported
        self._state_file = state_file  # where it records itself while serving (see infra.local.devstate)
        self._state: DevState | None = None
        self._ledger_file = ledger_file  # where the metered requests' ledger goes (polos capacity), if set
        self._moto = MotoServer()
        self._state_dir = Path(tempfile.mkdtemp(prefix="polos-dev-"))  # the manifest; removed by stop()
        self.stack: LocalStack | None = None
        self._gateway: GatewayServer | None = None
        self._pollers: Pollers | None = None
        self._timers: Ticker | None = None
        self._metering: SessionMeter | None = None
        self.url = ""
        self.api_key = ""
        self.aws_endpoint_url = ""
        self.startup_seconds = 0.0
        self._previous_env: dict[str, str | None] = {}

    def start(self) -> LocalStack:
        """Start moto, create the app's stack with empty state, then serve and poll. ``StackError`` (or
        ``OSError`` for the port) when it cannot start; nothing is left running then."""
        started = time.perf_counter()
        try:
            endpoint = self._moto.start()
            self._previous_env = apply_environment(fake_credentials(endpoint))
            app, target = resolve_app(self._app_target)
            self.stack = LocalStack.create(
                app,
                state_dir=self._state_dir,
                endpoint_url=endpoint,
                app_target=target,
                options=self._options,
            )
            self.api_key = self.stack.create_api_key(self._api_key)
            try:
                self._gateway = GatewayServer(self._address, self.stack.gateway.handle, self._request_log)
            except OSError as exc:
                raise StackError(
                    f"cannot listen on {self._address[0]}:{self._address[1]}: {exc.strerror}"
                ) from exc
            self._pollers = Pollers(self.stack.mappings)
            stack = self.stack
            if self._ledger_file is not None:
                self._metering = SessionMeter(endpoint, self._ledger_file)
            metering = self._metering

            def tick() -> None:  # each second (the cloud: timers each minute): on time within 1 s
                stack.invoke_timers({})
                stack.schedules.tick()
                if metering is not None:
                    metering.save()  # what `polos capacity` reads

            self._timers = Ticker("polos-timers", tick, interval=1.0)
        except BaseException:
            self.stop()
            raise
        # What starting made (moto's backends, botocore's models, the app) lives until the end: frozen, the
        # garbage collector stops traversing it (a full collection took ~0.5 s) during the run and at exit.
        gc.freeze()
        if self._before_serving is not None:
            self._before_serving()
        if self._metering is not None:
            self._metering.start()
            costs.install(self._metering)  # the runs API's `cost` (polos.api.costs)
        self._gateway.start()
        self._pollers.start()
        self._timers.start()
        self.url = self._gateway.url
        self.aws_endpoint_url = endpoint
        if self._state_file is not None:
            self._record(self._state_file, self.stack)
        self.startup_seconds = time.perf_counter() - started
        return self.stack

    def _record(self, path: Path, stack: LocalStack) -> None:
        """Write the state file that ``polos keys --dev`` reads; ``StackError`` (all stopped) if it cannot."""
        state = DevState(
            pid=os.getpid(),
            api_url=self.url,
            aws_endpoint_url=self.aws_endpoint_url,
            environment={**fake_credentials(self.aws_endpoint_url), **stack.names.env(stack.model)},
        )
        try:
            state.write(path)
        except OSError as exc:
            self.stop()
            raise StackError(f"cannot record this server in {path}: {exc}") from exc
        self._state = state

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop accepting requests, let requests and invocations in progress finish (up to ``timeout``),
        stop polling and moto. ``False`` when something was still running at the deadline."""
        deadline = time.monotonic() + timeout
        clean = True
        if self._state is not None and self._state_file is not None:
            self._state.remove(self._state_file)  # first: no other command targets a server going away
            self._state = None
        if self._gateway is not None:
            clean = self._gateway.stop(timeout=max(0.0, deadline - time.monotonic())) and clean
            self._gateway = None
        if self._timers is not None:
            clean = self._timers.stop(timeout=max(0.0, deadline - time.monotonic())) and clean
            self._timers = None
        if self._pollers is not None:
            clean = self._pollers.stop(timeout=max(0.0, deadline - time.monotonic())) and clean
            self._pollers = None
        if self._metering is not None:
            costs.install(None)
            self._metering.stop()
            self._metering = None
        if self.stack is not None:
            self.stack.close()
            self.stack = None
        apply_environment(self._previous_env)
        self._previous_env = {}
        self._moto.stop()
        shutil.rmtree(self._state_dir, ignore_errors=True)
        return clean

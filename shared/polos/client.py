"""``PolosClient``: the HTTP API from Python (stdlib HTTP, so the runtime needs nothing more), and
``ExecutionHandle``, a started run as ``Workflow.invoke`` and ``ctx.step.invoke`` return it.

The handle is the official Polos SDK's (its field names), plus ``run_id`` (= ``id``). It is data: a step
journals it and a replay rebuilds an equal one, so inside a workflow wait for a child with
``invoke_and_wait``, not with :meth:`ExecutionHandle.result`. Outside, ``get`` and ``result`` ask the HTTP
API through a client.

Overload is retried, not failed: ``429``/``503`` answers (honouring ``Retry-After``), and for requests that
are safe to send twice (``GET``, or carrying an ``Idempotency-Key``) connection errors and timeouts, with
exponential backoff and full jitter, at most ``max_attempts`` times and ``max_retry_seconds`` in all.
``publish`` and ``start_workflow`` send an ``Idempotency-Key`` of their own unless given one (one per
call, the same on each of its retries), so a retried publish or run is stored once.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr

from polos.errors import PolosAPIError, WorkflowRunError

ENV_API_URL = "POLOS_API_URL"
ENV_API_KEY = "POLOS_API_KEY"
RETRIED_STATUSES = frozenset({429, 503})
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_RETRY_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 20.0
_T = TypeVar("_T")
_pause: Callable[[float], None] = time.sleep  # tests replace it


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (``None``: absent or unreadable)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def backoff_seconds(attempt: int) -> float:
    """Full jitter after failed attempt ``attempt`` (1-based): uniform in [0, min(cap, base x 2^(n-1))]."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


class _Retryable(Exception):
    """Internal: an attempt that may be tried again; ``error`` is raised when none is left."""

    def __init__(self, error: Exception, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port, and refuses any other.

    urllib copies every header of a request, ``Authorization`` included, onto the request it follows a
    redirect with, whatever its host: left alone it would hand the API key to any server the API (or
    something posing as it) redirects to. The HTTP API never redirects, so refusing is the clear answer.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            fp.close()
            raise PolosAPIError(
                code,
                "redirect_refused",
                f"the API answered {code} redirecting to {newurl}, another origin; the client does not send "
                "its API key there: set base_url to the API's own URL",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


class PolosClient:
    """Talks to a Polos HTTP API (deployed or ``polos dev``). Reads ``POLOS_API_URL`` / ``POLOS_API_KEY``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_seconds: float = DEFAULT_MAX_RETRY_SECONDS,
    ) -> None:
        """``timeout`` bounds each HTTP request; ``max_attempts`` (1: no retry) and ``max_retry_seconds``
        bound the retries of one call (429/503, and connection errors and timeouts where safe)."""
        url = base_url or os.environ.get(ENV_API_URL)
        key = api_key or os.environ.get(ENV_API_KEY)
        if not url:
            raise ValueError(f"PolosClient needs base_url or the {ENV_API_URL} environment variable")
        if not key:
            raise ValueError(f"PolosClient needs api_key or the {ENV_API_KEY} environment variable")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        self.base_url = url.rstrip("/")
        self._api_key = key
        self._timeout = timeout
        if max_attempts < 1 or max_retry_seconds < 0:
            raise ValueError("max_attempts must be >= 1 and max_retry_seconds >= 0")
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        """Send a request (retried on overload, see the module) and return the decoded JSON answer; raises
        :class:`PolosAPIError` on errors, or the last connection error when the retries are spent."""
        unclear_is_safe = method == "GET" or "Idempotency-Key" in (headers or {})
        return self._retrying(lambda: self._attempt(method, path, body, headers, unclear_is_safe))

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        started = time.monotonic()
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except _Retryable as failed:
                wait = max(failed.wait or 0.0, backoff_seconds(number))
                left = self.max_retry_seconds - (time.monotonic() - started)
                if number == self.max_attempts or wait > left:
                    raise failed.error from None
                _pause(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None, unclear_is_safe: bool
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # nosec B310 - the scheme is checked in __init__
            self.base_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                **(headers or {}),
            },
        )
        try:
            with _OPENER.open(request, timeout=self._timeout) as response:  # nosec B310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"error": raw.decode(errors="replace"), "error_type": "http_error"}
            error = PolosAPIError(
                exc.code, str(problem.get("error_type", "http_error")), str(problem.get("error", problem))
            )
            if exc.code in RETRIED_STATUSES:
                raise _Retryable(error, retry_after_seconds(exc.headers.get("Retry-After"))) from None
            raise error from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            # No answer, or none in time: the request may have been applied. Sent again only when that is
            # harmless (a GET, or a key that makes the API answer the first request's answer).
            if unclear_is_safe:
                raise _Retryable(exc) from None
            raise

    async def _call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        return await asyncio.to_thread(self.request, method, path, body, headers=headers)

    async def publish(
        self, topic: str, events: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Publish events (each ``{"data": {...}, "event_type": ..., "id": ...}``) to ``topic``; without an
        ``idempotency_key`` the call makes its own, so its retries store the events once."""
        headers = {"Idempotency-Key": idempotency_key or _new_key()}
        answer: dict[str, Any] = await self._call(
            "POST", "/api/v1/events/publish", {"topic": topic, "events": events}, headers
        )
        return answer

    async def start_workflow(
        self,
        workflow_id: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        queue_name: str | None = None,
        queue_concurrency_limit: int | None = None,
        concurrency_key: str | None = None,
    ) -> ExecutionHandle:
        """Start a run of ``workflow_id`` and return its handle (bound to this client; one run however often
        the request is retried: the call sends an ``Idempotency-Key`` of its own unless given one).
        ``queue_name`` / ``queue_concurrency_limit`` / ``concurrency_key``: the run's queue (DESIGN §1c)."""
        headers = {"Idempotency-Key": idempotency_key or _new_key()}
        path = f"/api/v1/workflows/{urllib.parse.quote(workflow_id, safe='')}/run"
        body: dict[str, Any] = {"payload": payload}
        queueing = {
            "queue_name": queue_name,
            "queue_concurrency_limit": queue_concurrency_limit,
            "concurrency_key": concurrency_key,
        }
        body.update({name: value for name, value in queueing.items() if value is not None})
        answer = await self._call("POST", path, body, headers)
        return ExecutionHandle.model_validate(answer).bound(self)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """The run as ``GET /api/v1/runs/{run_id}`` shows it."""
        answer: dict[str, Any] = await self._call(
            "GET", f"/api/v1/runs/{urllib.parse.quote(run_id, safe='')}"
        )
        return answer

    async def get_execution(self, execution_id: str) -> dict[str, Any]:
        """The run as the official SDK shows it (``GET /api/v1/executions/{id}``)."""
        answer: dict[str, Any] = await self._call(
            "GET", f"/api/v1/executions/{urllib.parse.quote(execution_id, safe='')}"
        )
        return answer

    async def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first."""
        query = {"workflow_id": workflow_id, "status": status, "limit": limit, "cursor": cursor}
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        answer: dict[str, Any] = await self._call("GET", f"/api/v1/runs?{params}")
        return answer

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a run (``409`` when it is completed or failed; again when cancelled: ``200``); returns
        the run."""
        answer: dict[str, Any] = await self._call(
            "POST", f"/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/cancel"
        )
        return answer

    async def resume(
        self,
        run_id: str,
        key: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Resume the run's ``suspend`` step ``key`` with ``data``; returns the run. Sent with an
        ``Idempotency-Key`` (a new one unless given): a retry with it answers like the first request."""
        answer: dict[str, Any] = await self._call(
            "POST",
            f"/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/resume",
            {"step_key": key, "data": data},
            {"Idempotency-Key": idempotency_key or _new_key()},
        )
        return answer

    async def dead_letters(self, workflow_id: str, limit: int = 50) -> dict[str, Any]:
        """The workflow's dead-lettered messages (``dead_letters``, ``approximate_count``)."""
        path = f"/api/v1/workflows/{urllib.parse.quote(workflow_id, safe='')}/dead-letters?limit={limit}"
        answer: dict[str, Any] = await self._call("GET", path)
        return answer

    async def redrive(self, workflow_id: str) -> int:
        """Move the workflow's dead letters back to its queue (their runs run again); how many moved."""
        path = f"/api/v1/workflows/{urllib.parse.quote(workflow_id, safe='')}/dead-letters/redrive"
        answer = await self._call("POST", path)
        return int(answer["moved"])

    async def list_events(self, topic: str, after_sequence_id: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page of a topic's events in sequence order."""
        params = urllib.parse.urlencode(
            {"topic": topic, "after_sequence_id": after_sequence_id, "limit": limit}
        )
        answer: dict[str, Any] = await self._call("GET", f"/api/v1/events?{params}")
        return answer


def _new_key() -> str:
    """An ``Idempotency-Key`` for one logical call."""
    return f"polos-client-{uuid.uuid4()}"


class ExecutionHandle(BaseModel):
    """A started run. Equal handles name the same run (the client it was started with is not compared)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # ``run_id`` is accepted too: the name the HTTP API answers with (and journals written before this type).
    id: str = Field(validation_alias=AliasChoices("id", "run_id"))
    workflow_id: str
    created_at: str | None = None
    parent_execution_id: str | None = None
    root_workflow_id: str | None = None
    root_execution_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    step_key: str | None = None
    _client: PolosClient | None = PrivateAttr(default=None)  # the one it was started with

    @property
    def run_id(self) -> str:
        """The run's id (= ``id``)."""
        return self.id

    def bound(self, client: PolosClient) -> ExecutionHandle:
        """This handle, remembering ``client`` as the default of :meth:`get` and :meth:`result`."""
        self._client = client
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionHandle):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.id)

    def _client_or(self, client: PolosClient | None) -> PolosClient:
        if client is not None:
            return client
        if self._client is not None:
            return self._client
        return PolosClient()  # from POLOS_API_URL / POLOS_API_KEY

    async def get(self, client: PolosClient | None = None) -> dict[str, Any]:
        """The run as the official SDK shows it (``GET /api/v1/executions/{id}``)."""
        return await self._client_or(client).get_execution(self.id)

    async def status(self, client: PolosClient | None = None) -> dict[str, Any]:
        """The run as ``GET /api/v1/runs/{run_id}`` shows it."""
        return await self._client_or(client).get_run(self.id)

    async def result(
        self,
        client: PolosClient | None = None,
        timeout: float = 600,  # noqa: ASYNC109 - the official SDK's name
        poll_interval: float = 0.1,
    ) -> Any:
        """The run's result once completed (``client``: the one it was started with, else from the
        environment). :class:`WorkflowRunError` when the run failed or was cancelled, ``TimeoutError``
        when it is not done in time."""
        api = self._client_or(client)
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            run = await api.get_run(self.id)
            if run["status"] == "completed":
                return run["result"]
            if run["status"] in ("failed", "cancelled"):
                error = run.get("error") or {}
                kind = error.get("type", "RunCancelled" if run["status"] == "cancelled" else "Error")
                raise WorkflowRunError(self.id, kind, error.get("message", f"run {run['status']}"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"run {self.id} did not finish within {timeout} s (status {run['status']})"
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 2.0)


WorkflowHandle = ExecutionHandle  # the name this package used first

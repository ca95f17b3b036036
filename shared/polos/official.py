"""``Polos``: the official Polos SDK's client, so code written for it (``async with Polos() as polos``)
runs against this service unchanged.

It is a :class:`~polos.client.PolosClient` (accepted wherever one is) with the official constructor and
method names. The official client also starts a worker in-process; here workers are Lambda functions (or
``polos dev``), so the worker's arguments (``project_id``, ``deployment_id``, ``port``, ``log_file``, …) are
accepted and mean nothing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from polos.client import ExecutionHandle, PolosClient, json_data


class Polos(PolosClient):
    """The official SDK's client: ``api_url`` / ``api_key`` (else ``POLOS_API_URL`` / ``POLOS_API_KEY``);
    an async context manager. The other arguments configure the official in-process worker and are
    accepted and ignored."""

    def __init__(
        self,
        project_id: str | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        deployment_id: str | None = None,
        port: int | None = None,
        log_file: str | None = None,
        timeout: float = 30.0,
        **worker_options: Any,
    ) -> None:
        super().__init__(base_url=api_url, api_key=api_key, timeout=timeout)
        self.project_id = project_id  # accepted: one deployment is one project here
        self.deployment_id = deployment_id
        self.worker_options = {"port": port, "log_file": log_file, **worker_options}  # no worker here

    @property
    def api_url(self) -> str:
        """The API's URL (the official name of :attr:`base_url`)."""
        return self.base_url

    async def __aenter__(self) -> Polos:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None  # nothing to stop: the workers are Lambda functions

    async def invoke(
        self,
        workflow_id: str,
        payload: Any = None,
        queue_name: str | None = None,
        queue_concurrency_limit: int | None = None,
        concurrency_key: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        initial_state: Any = None,
        run_timeout_seconds: int | None = None,
    ) -> ExecutionHandle:
        """Start a run of ``workflow_id``; the options go to ``POST /api/v1/workflows/{id}/run``."""
        return await self.start_workflow(
            workflow_id,
            json_data(payload),
            queue_name=queue_name,
            queue_concurrency_limit=queue_concurrency_limit,
            concurrency_key=concurrency_key,
            session_id=session_id,
            user_id=user_id,
            initial_state=initial_state,
            run_timeout_seconds=run_timeout_seconds,
        )

"""The whole product in one process: HTTP API handlers, SQS queues on moto, and the worker between them.

`Api` calls the real API Gateway path (``functions/api/app.handler``, which checks the key) with a fresh
API key. :class:`InProcessClient` is a ``PolosClient`` whose requests take that path instead of the
network; before each read it lets the worker drain the queues, as the deployed event source mappings
would in the background, so ``wf.run(client, ...)`` and ``handle.result()`` finish.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from polos.api.keys import KeyStore
from polos.client import PolosClient
from polos.errors import PolosAPIError

from helpers.apigw import ApiAnswer, gateway_call, http_event
from helpers.worker import Pump


class Api:
    """HTTP API requests with a valid key, through the API handler."""

    def __init__(self) -> None:
        _, self.key = KeyStore().create("tests")

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> ApiAnswer:
        if query:
            query = {name: str(value) for name, value in query.items() if value is not None}
        event = http_event(method, path, body=body, headers=headers, query=query, api_key=self.key)
        return gateway_call(event)


class InProcessClient(PolosClient):
    """``PolosClient`` over :class:`Api`, draining the worker's queues before every ``GET``."""

    def __init__(self, pump: Pump, api: Api | None = None) -> None:
        super().__init__(base_url="http://polos.invalid", api_key="unused")
        self.api = api or Api()
        self.pump = pump

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        if method == "GET":
            self.pump.drain()
        parts = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        answer = self.api(method, parts.path, body, headers=headers, query=query)
        if answer.status >= 400:
            raise PolosAPIError(answer.status, answer.json["error_type"], answer.json["error"])
        return answer.json

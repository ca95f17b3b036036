"""A ``Polos`` client over :func:`polos.testing.local_stack`'s API handler (no network)."""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

from polos import Polos
from polos.errors import PolosAPIError
from polos.testing import Stack


class StackPolos(Polos):
    """``Polos`` whose requests take the stack's API Gateway path; the worker drains before each ``GET``,
    as the deployed event source mappings would in the background."""

    def __init__(self, stack: Stack, **options: Any) -> None:
        super().__init__(api_url="http://polos.invalid", api_key="unused", **options)
        self.stack = stack
        self.sent: list[tuple[str, str, Any]] = []  # each request once it is answered
        self.read_answered = threading.Event()  # set once a GET has been answered

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        if method == "GET":
            self.stack.drain()
        answer = self.stack.request(method, path, body, headers)
        self.sent.append((method, urllib.parse.urlsplit(path).path, body))
        if method == "GET":
            self.read_answered.set()
        if answer.status >= 400:
            raise PolosAPIError(answer.status, answer.body["error_type"], answer.body["error"])
        return answer.body

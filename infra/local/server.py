"""The local HTTP endpoint: HTTP/1.1 with keep-alive, one thread per connection, in front of the gateway."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.apigw import MAX_BODY_BYTES, HttpRequest, HttpResponse

# (method, path, status, milliseconds) after each request
RequestLog = Callable[[str, str, int, float], None]
IDLE_CONNECTION_SECONDS = 60
logger = logging.getLogger(__name__)


class _Refused(Exception):
    """A request refused before it reaches the gateway (as API Gateway itself answers it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = HttpResponse.message(status, message)


_TOO_LARGE = (413, "Request Entity Too Large")
_BAD = (400, "Bad Request")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer
    timeout = IDLE_CONNECTION_SECONDS

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, busy=False)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    raise _Refused(*_BAD) from None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise _Refused(*_TOO_LARGE)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.isdigit():
            raise _Refused(*_BAD)
        if int(length) > MAX_BODY_BYTES:
            raise _Refused(*_TOO_LARGE)
        return self.rfile.read(int(length))

    def _serve(self) -> None:
        started = time.perf_counter()
        self.server.track(self.connection, busy=True)
        try:
            try:
                response = self._gateway_response(self._read_body())
            except _Refused as refused:
                self.close_connection = True  # the rest of the body is still unread
                response = refused.response
            self._write(response)
            self.server.log_request_line(self.command, self.path, response.status, started)
        finally:
            if self.server.stopping:
                self.close_connection = True
            self.server.track(self.connection, busy=False)

    def _gateway_response(self, body: bytes) -> HttpResponse:
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
        )
        try:
            return self.server.gateway_handle(request)
        except Exception:
            logger.exception("the gateway failed on %s %s", self.command, self.path)
            return HttpResponse.message(500, "Internal Server Error")

    def _write(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the server logs one line per request itself."""


class GatewayServer(ThreadingHTTPServer):
    """Serves ``handle(HttpRequest) -> HttpResponse`` on ``(host, port)``; ``port=0`` picks a free one."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the listen backlog (socketserver's 5 resets bursts of new connections)

    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[HttpRequest], HttpResponse],
        log: RequestLog | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.gateway_handle = handle
        self._log = log
        self.stopping = False
        self._connections: dict[socket.socket, bool] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def track(self, connection: socket.socket, *, busy: bool) -> None:
        with self._lock:
            self._connections[connection] = busy
            self._idle.notify_all()

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)
            self._idle.notify_all()

    def log_request_line(self, method: str, path: str, status: int, started: float) -> None:
        if self._log is not None:
            self._log(method, path, status, (time.perf_counter() - started) * 1000)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="polos-gateway", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting, let requests in progress finish, close idle keep-alive connections.
        ``False`` when requests were still running after ``timeout`` seconds."""
        self.stopping = True
        self.shutdown()
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for connection, busy in list(self._connections.items()):
                    if not busy:
                        _close_reading(connection)
                if not any(self._connections.values()) or time.monotonic() >= deadline:
                    break
                self._idle.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            drained = not any(self._connections.values())
        self.server_close()
        return drained


def _close_reading(connection: socket.socket) -> None:
    """Wake a handler thread waiting for the next request on an idle connection (it then ends)."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)

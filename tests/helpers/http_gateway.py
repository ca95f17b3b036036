"""A minimal HTTP server in a thread that hands requests to the real API handler.

For tests of HTTP clients (``PolosClient``, ``polos publish``) without the local stack's gateway.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers.apigw import gateway_call, http_event


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        event = http_event(
            self.command,
            url.path,
            raw_body=body,
            headers={name.lower(): value for name, value in self.headers.items()},
            query=dict(urllib.parse.parse_qsl(url.query)),
        )
        answer = gateway_call(event)
        payload = json.dumps(answer.json).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        if "Retry-After" in answer.headers:
            self.send_header("Retry-After", answer.headers["Retry-After"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def serve() -> Iterator[str]:
    """Serve on a free local port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

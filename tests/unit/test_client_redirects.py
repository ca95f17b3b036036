"""``PolosClient`` never sends its API key to another origin on a redirect (urllib would copy the header)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from polos.client import PolosClient
from polos.errors import PolosAPIError

KEY = "pk_" + "1" * 16 + "_" + "2" * 64


@contextmanager
def server(location: str | None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local server recording each request's headers; it redirects (302) to ``location`` + path when
    given, a path under ``/moved`` to the same path on itself, and answers anything else ``{"ok": true}``."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({name.lower(): value for name, value in self.headers.items()})
            if location is not None or self.path.startswith("/moved/"):
                own = f"http://127.0.0.1:{self.server.server_address[1]}"
                self.send_response(302)
                target = (location + self.path) if location else own + self.path.removeprefix("/moved")
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_redirect_to_another_port_is_refused_and_the_key_stays_home() -> None:
    with server(None) as (elsewhere, seen_elsewhere), server(elsewhere) as (api, seen_by_api):
        client = PolosClient(api, KEY)
        with pytest.raises(PolosAPIError) as refused:
            asyncio.run(client.get_run("run_1"))
    assert (refused.value.status, refused.value.error_type) == (302, "redirect_refused")
    assert elsewhere in refused.value.error_message
    assert seen_by_api[0]["authorization"] == f"Bearer {KEY}"
    assert seen_elsewhere == []  # never contacted, so never given the key


def test_a_redirect_within_the_same_origin_is_followed_with_the_key() -> None:
    with server(None) as (api, seen):
        assert PolosClient(api, KEY).request("GET", "/moved/api/v1/runs") == {"ok": True}
    assert [headers["authorization"] for headers in seen] == [f"Bearer {KEY}"] * 2

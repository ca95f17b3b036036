"""The local HTTP endpoint: keep-alive, concurrency, bodies, limits and a graceful stop."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from infra.local.apigw import MAX_BODY_BYTES, HttpRequest, HttpResponse
from infra.local.server import GatewayServer

Handle = Callable[[HttpRequest], HttpResponse]


def echo(request: HttpRequest) -> HttpResponse:
    body = f"{request.method} {request.target} {len(request.body)}".encode()
    return HttpResponse(200, [("content-type", "text/plain")], body)


@pytest.fixture
def serve() -> Iterator[Callable[[Handle], GatewayServer]]:
    servers: list[GatewayServer] = []

    def start(handle: Handle) -> GatewayServer:
        server = GatewayServer(("127.0.0.1", 0), handle)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if not server.stopping:
            server.stop(timeout=2)


def connect(server: GatewayServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)


def test_keep_alive_serves_many_requests_on_one_connection(serve: Callable[[Handle], GatewayServer]) -> None:
    server = serve(echo)
    connection = connect(server)
    for n in range(3):
        connection.request("POST", f"/p?n={n}", body=b"x" * n)
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, f"POST /p?n={n} {n}".encode())
        assert response.getheader("content-length") == str(len(f"POST /p?n={n} {n}"))
    connection.close()


def test_requests_are_served_concurrently(serve: Callable[[Handle], GatewayServer]) -> None:
    together = threading.Barrier(3, timeout=5)

    def handle(request: HttpRequest) -> HttpResponse:
        together.wait()  # only returns when three requests are inside the handler at once
        return echo(request)

    server = serve(handle)
    statuses: list[int] = []

    def call() -> None:
        connection = connect(server)
        connection.request("GET", "/")
        statuses.append(connection.getresponse().status)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert statuses == [200, 200, 200]


def test_chunked_request_body(serve: Callable[[Handle], GatewayServer]) -> None:
    server = serve(echo)
    connection = connect(server)
    connection.request(
        "POST",
        "/c",
        body=iter([b"abc", b"defg"]),
        encode_chunked=True,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert connection.getresponse().read() == b"POST /c 7"


def raw_exchange(server: GatewayServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_bad_and_too_large_bodies(serve: Callable[[Handle], GatewayServer]) -> None:
    server = serve(echo)
    bad = raw_exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400")
    chunked = raw_exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert chunked.startswith(b"HTTP/1.1 400")
    large = raw_exchange(
        server, f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    )
    assert large.startswith(b"HTTP/1.1 413") and b"Request Entity Too Large" in large


def test_stop_finishes_requests_in_progress_and_closes_idle_connections(
    serve: Callable[[Handle], GatewayServer],
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(request: HttpRequest) -> HttpResponse:
        if request.target == "/slow":
            entered.set()
            release.wait(5)
        return echo(request)

    server = serve(slow)
    idle = connect(server)
    idle.request("GET", "/fast")
    assert idle.getresponse().read() == b"GET /fast 0"
    answers: list[int] = []

    def slow_call() -> None:
        connection = connect(server)
        connection.request("GET", "/slow")
        answers.append(connection.getresponse().status)

    caller = threading.Thread(target=slow_call)
    caller.start()
    assert entered.wait(5)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(server.stop(timeout=5)))
    stopper.start()
    while not server.stopping:  # the request in progress ends only after stop() began
        threading.Event().wait(0.01)
    release.set()
    stopper.join(timeout=10)
    caller.join(timeout=10)
    assert stopped == [True] and answers == [200]
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        idle.request("GET", "/fast")  # the idle keep-alive connection was closed
        idle.getresponse()


def test_a_failing_gateway_answers_500(serve: Callable[[Handle], GatewayServer]) -> None:
    def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("bug")

    connection = connect(serve(broken))
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.read()) == (500, b'{"message": "Internal Server Error"}')

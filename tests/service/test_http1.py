"""The worker's HTTP/1.1 fast path (service/server/http1.py): the same environ and answers as gunicorn's own request
loop, and a clean hand-over to that loop for every request it does not serve itself."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import create
from serverkit import Server

from service.server.http1 import FastPath

Factory = Callable[..., Server]
PEER, SERVER = ("127.0.0.1", 40001), ("127.0.0.1", 8000)
#: Entries whose values are objects (streams, callbacks, the socket), compared by presence only.
OBJECTS = {"wsgi.input", "wsgi.errors", "wsgi.early_hints", "gunicorn.socket", "wsgi.file_wrapper"}


class _Bytes:
    """A socket stand-in that returns one buffer, then the end of the stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        data, self.data = self.data[:size], self.data[size:]
        return data


def gunicorn_environ(head: bytes) -> dict[str, Any]:
    """The environ gunicorn's own parser and `wsgi.create` build for `head`."""
    cfg = Config()
    req = next(RequestParser(cfg, _Bytes(head), PEER))
    _resp, environ = create(req, None, PEER, SERVER, cfg)
    environ["wsgi.multithread"] = True  # as AsyncWorker.handle_request sets it
    return environ


def fast_environ(head: bytes) -> dict[str, Any] | None:
    """The environ the fast path builds for `head`, or None when it hands the request to gunicorn."""
    fast = FastPath(Config(), app=lambda env, start: [])
    parsed, _ = fast._head(_Bytes(b""), head)
    made = parsed and fast.environ(fast.connection_base(None, PEER, SERVER), parsed, None)
    if made is None:
        return None
    return {**made[0], "wsgi.input": None, "wsgi.early_hints": None}  # both added by FastPath.serve


def comparable(environ: dict[str, Any]) -> dict[str, Any]:
    """`environ` with object-valued entries reduced to their presence."""
    return {key: (True if key in OBJECTS else value) for key, value in environ.items()}


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/pool HTTP/1.1\r\nHost: example.test\r\n\r\n",
        b"GET /v1/jobs?status=queued&limit=5 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
        b"GET /a%20b/%C3%A9?q=%20#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\n",
        b"DELETE /v1/jobs/abc HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer t\r\n\r\n",
    ],
)
def test_the_fast_path_builds_the_environ_gunicorn_builds(head: bytes) -> None:
    assert comparable(fast_environ(head)) == comparable(gunicorn_environ(head))


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n",
        b"GET / HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"CONNECT example.test:443 HTTP/1.1\r\n\r\n",
        b"GET http://example.test/ HTTP/1.1\r\n\r\n",
        b"GET //double HTTP/1.1\r\n\r\n",
    ],
)
def test_requests_that_need_gunicorns_rules_are_handed_over(head: bytes) -> None:
    assert fast_environ(head) is None


def test_a_configuration_that_needs_gunicorns_request_loop_turns_the_fast_path_off() -> None:
    cfg = Config()
    quiet = type("Logger", (), {"access_log_enabled": False})()
    assert FastPath.refusal(cfg, quiet) is None
    cfg.set("proxy_protocol", "v1")
    assert FastPath.refusal(cfg, quiet) == "proxy protocol"
    cfg = Config()
    cfg.set("post_request", lambda worker, req, environ, resp: None)
    assert FastPath.refusal(cfg, quiet) == "a post_request hook"


def test_a_written_access_log_turns_the_fast_path_off() -> None:
    access = logging.getLogger("gunicorn.access")
    level = access.level
    access.setLevel(logging.INFO)
    try:
        logger = type("Logger", (), {"access_log_enabled": True})()
        assert FastPath.refusal(Config(), logger) == "the access log"
    finally:
        access.setLevel(level)


# -- on the wire: a real gunicorn with GreenWorker ------------------------------------------------------------
def exchange(server: Server, data: bytes, until: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Send `data` on a new connection and read until `until(received)` or the end of the stream."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while not until(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def responses(count: int) -> Callable[[bytes], bool]:
    """A reading condition: `count` complete plain-text responses of the test app have arrived."""
    return lambda data: len(re.findall(rb"\r\n\r\nhello \d+", data)) >= count


def test_pipelined_requests_are_answered_in_order_on_one_connection(gunicorn_server: Server) -> None:
    data = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
    received = exchange(gunicorn_server, data, lambda d: d.endswith(b"not found"))
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK\r\n") and b"\r\nConnection: keep-alive\r\n" in first
    assert b"\r\nDate: " in first and b"\r\nServer: gunicorn\r\n" in first
    assert second.startswith(b"404 Not Found\r\n")


def test_a_body_sent_after_its_head_is_read_whole(gunicorn_server: Server) -> None:
    with socket.create_connection(gunicorn_server.address, timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello")
        sock.sendall(b" world")
        received = b""
        while not received.endswith(b"hello world"):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed early: {received!r}"
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_body_the_app_does_not_read_is_skipped_before_the_next_request(gunicorn_server: Server) -> None:
    data = b"POST /hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nXXXXXGET /hello HTTP/1.1\r\n\r\n"
    received = exchange(gunicorn_server, data, responses(2))
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2, received


def test_a_chunked_request_is_served_by_gunicorn_and_the_connection_goes_on(gunicorn_server: Server) -> None:
    data = (
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"GET /hello HTTP/1.1\r\n\r\n"
    )
    received = exchange(gunicorn_server, data, lambda d: b"hello " in d.split(b"\r\n\r\nhello")[-1])
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\n\r\nhello" in received and received.count(b"HTTP/1.1 200 OK\r\n") == 2


def test_a_malformed_request_gets_gunicorns_400(gunicorn_server: Server) -> None:
    received = exchange(gunicorn_server, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", lambda d: False)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_an_http_1_0_request_is_answered_and_the_connection_closed(gunicorn_server: Server) -> None:
    received = exchange(gunicorn_server, b"GET /hello HTTP/1.0\r\n\r\n", lambda d: False)
    assert received.startswith(b"HTTP/1.0 200 OK\r\n") and b"Connection: close\r\n" in received


def test_connection_close_closes_after_the_response(gunicorn_server: Server) -> None:
    received = exchange(gunicorn_server, b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", lambda d: False)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in received


def test_head_gets_the_headers_and_no_body(gunicorn_server: Server) -> None:
    data = b"HEAD /hello HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\n"
    received = exchange(gunicorn_server, data, lambda d: d.endswith(b"not found"))
    head, rest = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n")

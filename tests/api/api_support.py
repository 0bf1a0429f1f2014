"""Support for the API acceptance tests: real greenpool servers (serverkit) with API helpers, problem checks,
and many raw connections at once.

`server_factory.start(env={...}, args=[...])` starts gunicorn with GreenWorker (or, with `cli=True`,
`greenpool serve`) through serverkit, with the shared plugin tasks, a 5 s graceful timeout and a 30 s
keep-alive unless told otherwise; every server is stopped at teardown. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import requests
import serverkit
from serverkit import HTTP_TIMEOUT, free_port, raise_nofile

__all__ = ["HTTP_TIMEOUT", "free_port", "raise_nofile"]  # for the tests, beside this module's own helpers

PLUGINS = "tests.plugins.tasks"
PROBLEM_JSON = "application/problem+json"
KEEPALIVE = 30  # seconds; the servers' default keep-alive unless a test sets one


class Server(serverkit.Server):
    """A real server with the API calls the acceptance tests make (each asserting its status)."""

    def submit(self, task: str, args: dict | None = None, wait: float | None = None, **extra: Any) -> dict:
        """POST a job; asserts 202 (or 200 when `wait` is given and it ended); returns the job."""
        params = None if wait is None else {"wait": wait}
        resp = self.post("/v1/jobs", json={"task": task, "args": args or {}, **extra}, params=params,
                         timeout=HTTP_TIMEOUT + (wait or 0))  # fmt: skip
        assert resp.status_code in ((200, 202) if wait else (202,)), (resp.status_code, resp.text)
        return resp.json()

    def job(self, job_id: str, wait: float | None = None) -> dict:
        """GET a job (long-polling `wait` seconds when given); asserts 200."""
        params = None if wait is None else {"wait": wait}
        resp = self.get(f"/v1/jobs/{job_id}", params=params, timeout=HTTP_TIMEOUT + (wait or 0))
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp.json()

    def pool(self) -> dict:
        """GET /v1/pool; asserts 200."""
        resp = self.get("/v1/pool")
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp.json()

    def pool_until(self, predicate: Any, timeout: float = 5.0, what: str = "") -> dict:
        """Poll `/v1/pool` until `predicate(stats)` (bounded by `timeout` s and 500 polls); returns the stats."""
        deadline = time.monotonic() + timeout
        stats = self.pool()
        for _ in range(500):
            if predicate(stats) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
            stats = self.pool()
        assert predicate(stats), f"/v1/pool never reached {what or predicate}: {stats}"
        return stats


class ServerFactory(serverkit.Servers):
    """Starts API servers into one directory; `close()` stops every one it started."""

    def start(  # type: ignore[override]
        self,
        env: dict[str, str] | None = None,
        args: list[str] | tuple[str, ...] = (),
        *,
        cli: bool = False,
        graceful_timeout: int = 5,
        boot_timeout: float = 20.0,
    ) -> Server:
        """Start a server. `env`: GREENPOOL_* (and other) variables; `args`: extra gunicorn (or serve) flags.

        The plugin module tests.plugins.tasks is loaded unless env sets GREENPOOL_PLUGINS.
        """
        # Idle keep-alive connections outlive the gaps between a test's requests, so that the session never
        # races the server closing an idle connection (a reset on reuse) unless a test sets its own.
        keepalive = "--keepalive" if cli else "--keep-alive"
        if keepalive not in args:
            args = [keepalive, str(KEEPALIVE), *args]
        return super().start({"GREENPOOL_PLUGINS": PLUGINS, **(env or {})},
                             ["--graceful-timeout", str(graceful_timeout), *args], serve=cli, log_level="info",
                             nofile=True, boot_timeout=boot_timeout, cls=Server)  # fmt: skip


def assert_problem(resp: requests.Response, status: int) -> dict:
    """`resp` is an RFC 9457 problem of `status`: problem+json with type, title, status and detail."""
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.text)
    media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
    assert media_type == PROBLEM_JSON, (resp.headers.get("Content-Type"), resp.text)
    body = resp.json()
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    assert not missing, f"problem body lacks {missing}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def error_fields(body: dict) -> list[str]:
    """The `field` of each entry in a 422 problem's `errors`."""
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return [e["field"] for e in body["errors"]]


# -- many connections at once: raw non-blocking sockets and one selector ----------------------------------
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the whole response had arrived

    def json(self) -> Any:
        return json.loads(self.body)


class RawConn:
    """One client connection; responses are parsed as they arrive (Content-Length bodies only)."""

    __slots__ = ("sock", "buf", "responses", "closed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.responses: list[RawResponse] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def feed(self, now: float) -> None:
        """Read what is there; parse complete responses."""
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.responses.append(RawResponse(int(head[0].split()[1]), headers, body, now))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def raw_request(method: str, path: str, host: str, body: bytes | None = None) -> bytes:
    """An HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def open_conns(address: tuple[str, int], count: int, deadline: float) -> list[RawConn]:
    """`count` connected sockets (blocking connect, then non-blocking); all closed again if one fails."""
    conns: list[RawConn] = []
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened only {len(conns)} of {count} connections in time")
            sock = socket.create_connection(address, timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conns.append(RawConn(sock))
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns


def collect(conns: list[RawConn], want: int, deadline: float) -> None:
    """Read until every connection has `want` responses (or is closed), or `deadline` passes."""
    import selectors

    sel = selectors.DefaultSelector()
    try:
        for conn in conns:
            if len(conn.responses) < want and not conn.closed:
                sel.register(conn.sock, selectors.EVENT_READ, conn)
        pending = len(sel.get_map())
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                conn = key.data
                conn.feed(time.monotonic())
                if len(conn.responses) >= want or conn.closed:
                    sel.unregister(conn.sock)
                    pending -= 1
    finally:
        sel.close()


def server_side_established(port: int) -> tuple[int, int]:
    """From /proc/net/tcp: (established connections whose local port is `port`, of those with nothing
    left unread in the server's receive queue) — i.e. accepted-or-not sockets, and requests consumed."""
    total = drained = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state, queues = parts[1], parts[3], parts[4]
            if state != "01" or int(local.rsplit(":", 1)[1], 16) != port:
                continue
            total += 1
            if int(queues.split(":")[1], 16) == 0:
                drained += 1
    return total, drained

"""Support for the API acceptance tests: a real greenpool server (gunicorn + GreenWorker) on loopback.

`server_factory.start(env={...}, args=[...])` runs
`python -m gunicorn -k service.worker.GreenWorker --bind 127.0.0.1:<port> --workers 1 ... service.app:app`
(or, with `cli=True`, `python -m service.cli serve --bind ...`), waits for `/healthz` within a bounded
deadline, captures stderr to a file (JSON log lines are parsed by `Server.log_records`), and always
terminates (then kills) what it started at teardown. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from serverkit import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
PLUGINS = "tests.api.plugin_tasks"
PROBLEM_JSON = "application/problem+json"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
HTTP_TIMEOUT = 10.0  # every requests call of the suite is bounded by this (or less)
KEEPALIVE = 30  # seconds; the servers' default keep-alive unless a test sets one



def raise_nofile() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Server:
    """A running server: its master process, port, and captured stdout/stderr files."""

    proc: subprocess.Popen
    port: int
    stderr_path: Path
    stdout_path: Path
    host: str = "127.0.0.1"
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # -- HTTP ------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request on the server's keep-alive session; bounded by HTTP_TIMEOUT unless told otherwise."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

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

    # -- logs ------------------------------------------------------------------------------------------
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        """Every JSON object logged on stderr, one per line (non-JSON lines are skipped)."""
        records = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records

    def job_events(self, ended: tuple[str, ...] = (), timeout: float = 5.0) -> dict[str, list[str]]:
        """job_id -> the statuses `greenpool.jobs` logged for it, in order; first waits up to `timeout` s for
        the end lines of the jobs `ended` (a running worker writes its info lines in batches, ≤ 1 s late)."""
        deadline = time.monotonic() + timeout
        while True:
            events: dict[str, list[str]] = {}
            for rec in self.log_records():
                if rec.get("logger") == "greenpool.jobs" and rec.get("job_id") and rec.get("status"):
                    events.setdefault(rec["job_id"], []).append(rec["status"])
            if all(len(events.get(i, ())) > 1 for i in ended) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)  # polling a log file: there is no event to wait on

    # -- process ---------------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the master, wait up to `timeout` s, then SIGKILL its process group; returns the exit code."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                self.kill()
        rc = self.proc.wait(5)
        self._kill_group()  # a worker left behind by a killed master
        return rc

    def kill(self) -> None:
        self._kill_group()
        if self.proc.poll() is None:
            self.proc.kill()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session we started (start_new_session=True)


class ServerFactory:
    """Starts servers into `directory`; `close()` stops every one it started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[Server] = []

    def start(
        self,
        env: dict[str, str] | None = None,
        args: list[str] | tuple[str, ...] = (),
        *,
        cli: bool = False,
        graceful_timeout: int = 5,
        boot_timeout: float = 20.0,
    ) -> Server:
        """Start a server. `env`: GREENPOOL_* (and other) variables; `args`: extra gunicorn (or serve) flags.

        The plugin module tests.api.plugin_tasks is loaded unless env sets GREENPOOL_PLUGINS.
        """
        port = free_port()
        bind = f"127.0.0.1:{port}"
        # Idle keep-alive connections outlive the gaps between a test's requests, so that the session never
        # races the server closing an idle connection (a reset on reuse) unless a test sets its own.
        keepalive = "--keepalive" if cli else "--keep-alive"
        if keepalive not in args:
            args = [keepalive, str(KEEPALIVE), *args]
        if cli:
            cmd = [PYTHON, "-m", "service.cli", "serve", "--bind", bind,
                   "--graceful-timeout", str(graceful_timeout), *args]  # fmt: skip
        else:
            cmd = [PYTHON, "-m", "gunicorn", "-k", "service.worker.GreenWorker", "--bind", bind,
                   "--workers", "1", "--no-control-socket", "--pythonpath", str(REPO),
                   "--graceful-timeout", str(graceful_timeout), *args, "service.app:app"]  # fmt: skip
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
        full_env.update({
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "GREENPOOL_PLUGINS": PLUGINS,
            **(env or {}),
        })  # fmt: skip
        stderr_path = self.directory / f"server-{port}.stderr"
        stdout_path = self.directory / f"server-{port}.stdout"
        with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=raise_nofile,
            )  # fmt: skip
        server = Server(proc, port, stderr_path, stdout_path)
        self.servers.append(server)
        self._wait_healthy(server, time.monotonic() + boot_timeout)
        return server

    @staticmethod
    def _wait_healthy(server: Server, deadline: float) -> None:
        last: object = None
        for _ in range(2000):
            if server.proc.poll() is not None:
                code = server.proc.returncode
                pytest.fail(f"server exited early with code {code}\n--- stderr ---\n{server.stderr()}")
            if time.monotonic() > deadline:
                break
            try:
                resp = requests.get(server.url + "/healthz", timeout=1.0)
                if resp.status_code == 200:
                    return
                last = resp.status_code
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.05)
        server.kill()
        pytest.fail(f"server did not answer /healthz in time (last: {last!r})\n--- stderr ---\n{server.stderr()}")

    def close(self) -> None:
        for server in self.servers:
            server.stop()


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

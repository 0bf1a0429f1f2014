"""The one launcher of real servers for the tests: gunicorn with our worker, `greenpool serve`, or a command.

Environment policy (`server_env`): the caller's `GREENPOOL_*` variables are stripped, then PYTHONUNBUFFERED=1,
PYTHONPATH=<repo>[:extra paths][:the caller's], GREENPOOL_LOG_LEVEL (warning unless told), GREENPOOL_STORE=memory
(no test server writes the default store into the checkout; a test asks for `sqlite:PATH` in a tmp dir), then
the test's `env`. A `command` given whole (a built image's entrypoint, Prometheus) gets exactly `env` and
nothing of this process's. stdout and stderr go to files; a server that does not boot fails the test with its log,
and the root conftest adds the log of every server still running to the report of a failed test.
Every server runs in its own session: `stop()` ends what is left of it (SIGKILL to the process group).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import Any, TypeVar

import pytest
import requests

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
WORKER_CLASS = "service.worker.GreenWorker"
APP = "service.app:app"
HTTP_TIMEOUT = 10.0  # every request made through a Server is bounded by this unless told otherwise
LOG_TAIL = 60  # lines of a server's log shown in a failure report

#: the servers started and not yet stopped (the root conftest shows their logs when a test fails)
RUNNING: list[Server] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_env(env: dict[str, str] | None = None, pythonpath: Sequence[Path | str] = (),
               log_level: str = "warning") -> dict[str, str]:  # fmt: skip
    """The environment of a server (or CLI run) started by the tests: see the module docstring."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
    paths = [str(REPO), *map(str, pythonpath), os.environ.get("PYTHONPATH")]
    full.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, paths)),
                 "GREENPOOL_LOG_LEVEL": log_level, "GREENPOOL_STORE": "memory", **(env or {})})  # fmt: skip
    return full


def run_cli(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 25.0,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`greenpool ARGS` (python -m service.cli) to its end, with the servers' environment policy."""
    return subprocess.run([PYTHON, "-m", "service.cli", *args], cwd=REPO, env=server_env(env, **kwargs),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@dataclass
class Server:
    """A server process we started: its port, its captured stdout and stderr, and a keep-alive session."""

    proc: subprocess.Popen
    port: int
    stderr_path: Path
    stdout_path: Path
    host: str = "127.0.0.1"
    scheme: str = "http"
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8123."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) for raw sockets."""
        return self.host, self.port

    # -- logs ------------------------------------------------------------------------------------------
    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (its log lines)."""
        return self.stderr_path.read_text(errors="replace")

    def log(self) -> str:
        """Everything the server wrote so far: stderr, then stdout."""
        return self.stderr() + self.stdout_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        """Every JSON object logged on stderr, one per line (other lines are skipped)."""
        records = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def job_events(self, ended: Sequence[str] = (), timeout: float = 5.0) -> dict[str, list[str]]:
        """job_id -> the statuses `greenpool.jobs` logged for it, in order; first waits up to `timeout` s for a
        terminal line of each job in `ended` (a running worker writes its info lines in batches, <= 1 s late)."""
        deadline = time.monotonic() + timeout
        while True:
            events: dict[str, list[str]] = {}
            for rec in self.log_records():
                if rec.get("logger") == "greenpool.jobs" and rec.get("job_id") and rec.get("status"):
                    events.setdefault(rec["job_id"], []).append(rec["status"])
            if all(any(s in TERMINAL for s in events.get(i, ())) for i in ended) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)  # polling a log file: there is no event to wait on

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        """The last `lines` lines of the log, for failure messages."""
        return "\n".join(self.log().splitlines()[-lines:])

    # -- HTTP ------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request on the server's keep-alive session, bounded by HTTP_TIMEOUT unless told otherwise."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET `path`."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST `path`."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        """PATCH `path`."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE `path`."""
        return self.request("DELETE", path, **kwargs)

    # -- process ---------------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        """Send `sig` to the master."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, once the master has exited within `timeout` s (None if it has not)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = SIGTERM, timeout: float = 15.0) -> int | None:
        """Send `sig`, wait up to `timeout` s, then SIGKILL what is left of its session; the exit code."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.wait_exit(timeout)
        self.kill()
        with contextlib.suppress(ValueError):
            RUNNING.remove(self)
        return self.wait_exit(5)

    def kill(self) -> None:
        """SIGKILL the session we started (a worker left behind by a killed master too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, SIGKILL)

    def wait_ready(self, path: str, status: int | None, deadline: float, tls: ssl.SSLContext | None) -> None:
        """Poll `GET path` until it answers `status` (any status if None); fail with the log otherwise."""
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"the server exited with {self.proc.returncode} while booting\n"
                            f"--- server {self.port} log ---\n{self.log_tail()}")  # fmt: skip
            conn = (http.client.HTTPSConnection(self.host, self.port, timeout=2, context=tls) if tls else
                    http.client.HTTPConnection(self.host, self.port, timeout=2))  # fmt: skip
            try:
                conn.request("GET", path)
                last = conn.getresponse().status
                if status is None or last == status:
                    return
            except OSError as exc:
                last = exc
            finally:
                conn.close()
            time.sleep(0.05)
        self.stop(SIGKILL)
        pytest.fail(f"the server did not answer {path} in time (last: {last!r})\n"
                    f"--- server {self.port} log ---\n{self.log_tail()}")  # fmt: skip


S = TypeVar("S", bound=Server)


def server_command(bind: str, args: Sequence[str], *, serve: bool, app: str, worker_class: str) -> list[str]:
    """`greenpool serve --bind BIND ARGS` or `gunicorn -k WORKER --bind BIND --workers 1 ... ARGS APP`."""
    if serve:
        return [PYTHON, "-m", "service.cli", "serve", "--bind", bind, *args]
    return [PYTHON, "-m", "gunicorn", "-k", worker_class, "--bind", bind, "--workers", "1", "--no-control-socket",
            *args, app]  # fmt: skip


def start_server(
    log_dir: Path,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    *,
    serve: bool = False,
    app: str = APP,
    worker_class: str = WORKER_CLASS,
    command: Sequence[str] | None = None,
    bind_host: str = "127.0.0.1",
    port: int | None = None,
    pythonpath: Sequence[Path | str] = (),
    log_level: str = "warning",
    cwd: Path = REPO,
    nofile: bool = False,
    ready_path: str = "/healthz",
    ready_status: int | None = 200,
    tls: ssl.SSLContext | None = None,
    boot_timeout: float = 30.0,
    cls: type[S] = Server,  # type: ignore[assignment]
) -> S:
    """Start a server on a free loopback port (or `port`) and wait, bounded, until `ready_path` answers.

    gunicorn serving `app` with `worker_class` by default; `serve=True`: `greenpool serve`; `command`: that
    command line as given (with exactly `env`). `args` go before the app (gunicorn) or after the bind
    (serve); `nofile` raises the server's open-files limit to the hard limit; `cls` is the Server class.
    """
    port = port or free_port()
    if command is not None:
        cmd, full_env = list(command), {"PYTHONUNBUFFERED": "1", **(env or {})}
    else:
        cmd = server_command(f"{bind_host}:{port}", args, serve=serve, app=app, worker_class=worker_class)
        full_env = server_env(env, pythonpath, log_level)
    stderr_path, stdout_path = log_dir / f"server-{port}.stderr", log_dir / f"server-{port}.stdout"
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=raise_nofile if nofile else None)  # fmt: skip
    server = cls(proc=proc, port=port, stderr_path=stderr_path, stdout_path=stdout_path,
                 scheme="https" if tls else "http")  # fmt: skip
    RUNNING.append(server)
    server.wait_ready(ready_path, ready_status, time.monotonic() + boot_timeout, tls)
    return server


class Servers:
    """Starts servers into one directory with fixed defaults; `close()` stops every one it started."""

    def __init__(self, directory: Path, **defaults: Any) -> None:
        self.directory = directory
        self.defaults = defaults
        self.servers: list[Server] = []

    def start(self, env: dict[str, str] | None = None, args: Sequence[str] = (), **options: Any) -> Any:
        """`start_server` with this set's defaults (its `env` under the given one)."""
        merged = {**self.defaults, **options}
        server = start_server(self.directory, {**merged.pop("env", {}), **(env or {})}, args, **merged)
        self.servers.append(server)
        return server

    def close(self) -> None:
        """Stop every server started here."""
        for server in self.servers:
            server.stop()

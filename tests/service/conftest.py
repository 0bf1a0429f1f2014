"""Fixtures that run a real gunicorn (with service.worker.GreenWorker) on a free loopback port."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverkit import Server, free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER_CLASS = "service.worker.GreenWorker"


def wait_http(
    host: str,
    port: int,
    path: str,
    proc: subprocess.Popen,
    deadline: float,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Poll until an HTTP(S) GET of `path` gets any answer; fail if `proc` exits or `deadline` passes."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited early with code {proc.returncode}")
        if tls is None:
            conn = http.client.HTTPConnection(host, port, timeout=2)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=2, context=tls)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError as exc:
            last = exc
        finally:
            conn.close()
        time.sleep(0.05)
    raise TimeoutError(f"gunicorn did not answer on {host}:{port}{path} in time (last error: {last!r})")


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn servers: `start(*cli_args, app=..., env=..., ready_path=..., tls=...)`; all stopped at
    teardown.

    `app` defaults to the test app (tests/service/wsgi_apps.py); any "module:callable" importable from the
    repository root works (e.g. "service.app:app"). `env` adds environment variables. With `--certfile` and
    `--keyfile` among the arguments, pass `tls` (a client SSLContext trusting the certificate).
    """
    servers: list[Server] = []

    def start(
        *args: str,
        app: str = "wsgi_apps:app",
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        boot_timeout: float = 20.0,
        tls: ssl.SSLContext | None = None,
    ) -> Server:
        port = free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        cmd = [
            sys.executable, "-m", "gunicorn",
            "-k", WORKER_CLASS,
            "--bind", f"127.0.0.1:{port}",
            "--no-control-socket",
            "--pythonpath", f"{REPO},{HERE}",
            "--log-level", "info",
            *args,
            app,
        ]  # fmt: skip
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
        server = Server(proc=proc, port=port, log_path=log_path, scheme="https" if tls else "http")
        servers.append(server)
        try:
            wait_http(server.host, port, ready_path, proc, time.monotonic() + boot_timeout, tls)
        except Exception as exc:
            server.stop(signal.SIGKILL)
            pytest.fail(f"gunicorn did not start: {exc}\n--- log ---\n{server.log()}")
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gunicorn_server(gunicorn_factory: Callable[..., Server]) -> Server:
    """One gunicorn with GreenWorker serving the test app with default settings."""
    return gunicorn_factory()

"""Start a real greenpool server (gunicorn + service.worker.GreenWorker) on a free loopback port.

Shared by the suites that speak HTTP to the service: `start_server(env=..., args=...)` returns a `Server`
whose log (stdout and stderr) is a file the test can read; `Server.stop()` sends a signal and waits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    """A running gunicorn master, its address, and its combined log file."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    scheme: str = "http"

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8123."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) for raw sockets."""
        return self.host, self.port

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig`, wait up to `timeout` seconds (then SIGKILL); return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 boot_timeout: float = 20.0) -> Server:  # fmt: skip
    """Run `service.app:app` under gunicorn with GreenWorker; wait (bounded) until /healthz answers."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "gunicorn", "-k", "service.worker.GreenWorker", "--bind", f"127.0.0.1:{port}",
           "--workers", "1", "--no-control-socket", *args, "service.app:app"]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "GREENPOOL_LOG_LEVEL": "warning", **(env or {})}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(proc, port, log_path)
    deadline = time.monotonic() + boot_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log()}")
        try:
            requests.get(server.url + "/healthz", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise TimeoutError(f"the server did not answer /healthz within {boot_timeout}s:\n{server.log()}")

"""A real redis-server for the Redis tests: on a free 127.0.0.1 port, in a temp dir, no persistence.

(No tests here; the test_ prefix keeps it among the files of the Redis work. Imported by its siblings.)
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from pool_core import sleep, spawn
from service.storage.redis import connect

READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process; `kill()` then `start()` brings it back on the same port."""

    def __init__(self, directory: Path, *extra: str, tls: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (Debian package redis-server)")
        self.binary, self.directory, self.extra, self.tls = binary, directory, extra, tls
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log: list[bytes] = []

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it and return once its log says it accepts connections (an error if it never does)."""
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        args = [self.binary, *port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), "--logfile", "", "--daemonize", "no", *self.extra]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
        out = self.process.stdout  # unbuffered: select() then sees every line not yet read
        deadline = time.monotonic() + timeout
        while True:  # bounded by the deadline; each readline waits for a line the server writes
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                self.stop()
                raise RuntimeError(f"redis-server did not become ready: {b''.join(self.log)!r}")
            line = out.readline()
            self.log.append(line)
            if READY in line:
                break
            if not line:
                raise RuntimeError(f"redis-server exited: {b''.join(self.log)!r}")
        threading.Thread(target=self._drain, args=(out,), daemon=True).start()
        return self

    def _drain(self, out) -> None:
        for line in out:
            self.log.append(line)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye to clients."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """One redis-server per test module (import this fixture into the module)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


class Ticker:
    """A green thread that ticks every 10 ms: a hub blocked by someone shows as one long gap."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.ticks: list[float] = []
        self._thread = None

    def __enter__(self) -> Ticker:
        self._thread = spawn(self._run)
        sleep(0)  # let it take its first tick
        return self

    def _run(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            sleep(self.period)

    def __exit__(self, *exc) -> None:
        self._thread.kill()

    def ticks_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.ticks)

    def longest_gap(self) -> float:
        return max((b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)), default=0.0)

    def assert_hub_was_free(self, start: float, end: float) -> None:
        """A free hub ticks ~100 times a second; a blocked one shows a gap as long as the block (or no ticks)."""
        assert self.longest_gap() < 0.25, f"the hub stalled for {self.longest_gap():.3f} s"
        assert self.ticks_between(start, end) >= int((end - start) * 100 * 0.4)


def assert_connect_times_out_cooperatively(url: str, connect_timeout: float = 0.5, **kwargs) -> None:
    """A client for `url` (a peer that never completes the connect) gives up after `connect_timeout`, hub free."""
    client = connect(url, connect_timeout=connect_timeout, retries=0, **kwargs)
    with Ticker() as ticker:
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError, match="connecting"):
            client.ping()
        end = time.monotonic()
    assert connect_timeout * 0.9 < end - start < connect_timeout + 1.0
    ticker.assert_hub_was_free(start, end)

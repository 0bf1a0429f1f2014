"""Fixtures for the client and CLI tests: real greenpool servers on loopback, and a connection-cutting proxy.

`server` is `python -m gunicorn -k service.worker.GreenWorker --bind 127.0.0.1:<free port> service.app:app`
(pool of 8, plugin tasks from tests.plugins.tasks), started once for the directory; `tight_server`
has a pool of 0 and room for 2 queued jobs (for 429). Both wait for `/healthz` within a bounded deadline and
are terminated (then killed) at teardown. `CuttingProxy` relays 127.0.0.1 TCP traffic in threads and cuts a
connection after a number of bytes from the server, to test transparent resumption.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serverkit
from serverkit import Server

from service.client import Client

PLUGINS = "tests.plugins.tasks"


def start_server(directory: Path, env: dict[str, str]) -> Server:
    """A server with the shared plugin tasks and a 2 s graceful timeout (serverkit)."""
    return serverkit.start_server(directory, {"GREENPOOL_PLUGINS": PLUGINS, **env}, ["--graceful-timeout", "2"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a pool of 8 shared by the client tests (tests that resize it restore the size)."""
    srv = start_server(tmp_path_factory.mktemp("client-server"), {"GREENPOOL_POOL_SIZE": "8"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose pool runs nothing (size 0) and whose queue holds 2 jobs: the third submit is a 429."""
    env = {"GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": "2", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "2"}
    srv = start_server(tmp_path_factory.mktemp("tight-server"), env)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """A Client on the shared server."""
    with Client(server.url, timeout=10.0) as c:
        yield c


class CuttingProxy:
    """A loopback TCP relay that, `cuts` times, closes a connection after `cut_after` bytes from the server."""

    def __init__(self, upstream_port: int, cut_after: int, cuts: int = 1) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cuts_done = 0
        self.requests = bytearray()  # everything the client sent, for assertions
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self._running:
            try:
                down, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            up = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._sockets += [down, up]
            threading.Thread(target=self._pump_up, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(up, down), daemon=True).start()

    def _pump_up(self, down: socket.socket, up: socket.socket) -> None:
        """Client → server, unchanged."""
        with contextlib.suppress(OSError):
            while data := down.recv(65536):
                with self._lock:
                    self.requests += data
                up.sendall(data)
        with contextlib.suppress(OSError):
            up.shutdown(socket.SHUT_WR)

    def _pump_down(self, up: socket.socket, down: socket.socket) -> None:
        """Server → client, cutting the connection once it passes `cut_after` bytes (while cuts are left)."""
        sent = 0
        with contextlib.suppress(OSError):
            while data := up.recv(65536):
                with self._lock:
                    cut = self.cuts_left > 0 and sent + len(data) > self.cut_after
                    if cut:
                        self.cuts_left -= 1
                        self.cuts_done += 1
                if cut:
                    down.sendall(data[: self.cut_after - sent])
                    break
                down.sendall(data)
                sent += len(data)
        for s in (down, up):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        """Stop accepting and close every relayed connection."""
        self._running = False
        self._thread.join(2)
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def proxy_factory(server: Server) -> Iterator[Callable[..., CuttingProxy]]:
    """`proxy_factory(cut_after, cuts=1)`: a CuttingProxy in front of `server`, closed at teardown."""
    made: list[CuttingProxy] = []

    def make(cut_after: int, cuts: int = 1) -> CuttingProxy:
        proxy = CuttingProxy(server.port, cut_after, cuts)
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.close()

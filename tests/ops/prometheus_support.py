"""A real Prometheus (the Debian `prometheus` binary) on loopback for the operations tests: started with a
config the test wrote, asked through its HTTP API, every call bounded, always stopped by the caller."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from ops_support import free_port
from serverkit import Server, start_server
from tools import which


class Prometheus:
    """One prometheus process we started; `query` and `targets` speak its HTTP API."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.api = f"http://127.0.0.1:{server.port}/api/v1"

    def _alive(self) -> None:
        proc = self.server.proc
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {proc.returncode}: {self.server.log()}")

    def query(self, expr: str) -> list[dict[str, Any]] | None:
        """The instant query's result, or None while it is empty or Prometheus cannot answer yet."""
        self._alive()
        try:
            body = requests.get(f"{self.api}/query", params={"query": expr}, timeout=2).json()
        except (requests.RequestException, ValueError):
            return None
        return body["data"]["result"] if body.get("status") == "success" and body["data"]["result"] else None

    def get(self, path: str) -> Any:
        """`GET /api/v1/<path>`'s data (an AssertionError if it does not succeed)."""
        self._alive()
        body = requests.get(f"{self.api}/{path}", timeout=2).json()
        assert body.get("status") == "success", body
        return body["data"]


@contextlib.contextmanager
def prometheus(directory: Path, config: Path) -> Iterator[Prometheus]:
    """Prometheus with `config`, its data in `directory`, ready (`/-/ready`) when entered, stopped on exit."""
    port = free_port()
    server = start_server(directory, {}, command=[which("prometheus"), f"--config.file={config}",
                          f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                          "--log.level=warn"], port=port, cwd=directory, ready_path="/-/ready")  # fmt: skip
    try:
        yield Prometheus(server)
    finally:
        server.stop(timeout=10)

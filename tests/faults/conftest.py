"""Fixtures for the fault tests: real servers (serverkit) with the misbehaving tasks of tests.plugins.tasks loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_support import PLUGINS
from serverkit import Server, start_server


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with the fault tasks (extra env and gunicorn args per call); all stopped at the end."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
        server = start_server(tmp_path, env={**PLUGINS, **(env or {})}, args=("--keep-alive", "30", *args))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

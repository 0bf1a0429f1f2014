"""Fixtures for the operations tests: `ops_server` starts real greenpool servers, always stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_support import OpsServer


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[Callable[..., OpsServer]]:
    """A factory `ops_server(env=..., args=..., cli=...)` of servers on loopback, all stopped at teardown."""
    started: list[OpsServer] = []

    def start(*args: Any, **kwargs: Any) -> OpsServer:
        server = OpsServer.start(tmp_path, *args, **kwargs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()

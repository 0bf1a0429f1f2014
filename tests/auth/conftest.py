"""Fixtures for the authentication and idempotency tests: real servers (serverkit) configured with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import TOKENS, Api, tokens_env
from serverkit import Server, start_server


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the `TOKENS` (alice and bob: submit; root: admin) and room to run jobs."""
    env = {"GREENPOOL_POOL_SIZE": "8", "GREENPOOL_TOKENS": tokens_env(*TOKENS.values())}
    server = start_server(tmp_path_factory.mktemp("auth-server"), env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(auth_server: Server) -> Iterator[Api]:
    """Requests to `auth_server` as any of the `TOKENS` (or none)."""
    client = Api(auth_server.url)
    yield client
    client.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """`start(env)`: a server for one test, stopped at its end."""
    servers: list[Server] = []

    def run(env: dict[str, str]) -> Server:
        server = start_server(tmp_path, env=env)
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()

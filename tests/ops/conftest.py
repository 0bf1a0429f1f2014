"""Fixtures for the operations tests: `ops_server` starts real greenpool servers, always stopped afterwards;
`replicas` starts them as the replicas of one cluster, on a real redis-server of their own."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_support import OpsServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))  # test_redis_support, as tests/cluster

from test_redis_support import RedisServer  # noqa: E402


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


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[..., list[OpsServer]]]:
    """`replicas(n, **env)`: n servers A, B, … sharing a fresh redis-server (skips naming the Debian package if
    it is not installed), in cluster mode (`GREENPOOL_REPLICA_ID` = their letter); all stopped at teardown,
    before the redis-server."""
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = RedisServer(directory).start()
    started: list[OpsServer] = []

    def start(n: int, **env: str) -> list[OpsServer]:
        for i in range(n):
            settings = {"GREENPOOL_STORE": redis.url, **env, "GREENPOOL_REPLICA_ID": "ABC"[i]}
            started.append(OpsServer.start(tmp_path, env=settings))
        return started[-n:]

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        redis.stop()

"""Cluster-mode tests: engines (in-process) or real servers sharing one real redis-server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))  # test_redis_support (RedisServer)

from test_redis_support import RedisServer  # noqa: E402

from service.config import Config  # noqa: E402
from service.engine import Engine  # noqa: E402
from service.engine.replicas import RedisCluster  # noqa: E402
from service.storage import MemoryStore  # noqa: E402
from service.storage.redis import connect  # noqa: E402
from service.tasks import Registry  # noqa: E402


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test module (skips naming the Debian package if it is not installed)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def replicas(redis_server: RedisServer) -> Iterator[Callable[..., list[Engine]]]:
    """`build(n, registry, **config)`: n engines in this process as n replicas: one shared memory store (the
    shared queue and records a Redis store would be) and one Redis for the cluster runtime (leases, hints,
    heartbeats); all stopped after the test."""
    made: list[tuple[Engine, Any]] = []
    first = connect(redis_server.url)
    first.flushall()
    first.close()

    def build(n: int, registry: Registry | None = None, lease: float = 15.0, **config: Any) -> list[Engine]:
        store = MemoryStore(10_000)
        registry = registry or Registry.with_builtins(entry_points=False)
        engines = []
        for i in range(n):
            client = connect(redis_server.url)
            cluster = RedisCluster(client, "gp", f"replica-{'abc'[i]}", lease)
            settings = {"log_level": "warning", "store": "memory", **config}
            engine = Engine(Config(**settings), registry, store, cluster=cluster)
            made.append((engine, client))
            engines.append(engine)
        return engines

    yield build
    for engine, client in made:
        for thread in engine.threads():
            thread.kill()
        client.close()

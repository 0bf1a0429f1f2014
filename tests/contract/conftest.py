"""Contract-test fixtures: the OpenAPI document, its checker, and real servers (see openapi_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_contract import Contract, Server, load_spec, start_server


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    """The OpenAPI document (service/openapi.yaml) as data."""
    return load_spec()


@pytest.fixture(scope="session")
def contract(spec: dict[str, Any]) -> Contract:
    """The checker that holds real responses to the document."""
    return Contract(spec)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with room to run jobs: pool size 4, a 4 KiB body limit (so 413 is cheap to provoke), and
    result streams that send a heartbeat after 0.2 idle seconds (so heartbeats are quick to see)."""
    env = {
        "GREENPOOL_POOL_SIZE": "4",
        "GREENPOOL_MAX_BODY_BYTES": "4096",
        "GREENPOOL_MAX_QUEUED": "1000",
        "GREENPOOL_STREAM_HEARTBEAT": "0.2",
    }
    srv = start_server(tmp_path_factory.mktemp("contract-server"), env)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that runs nothing (pool size 0) and queues at most 2 jobs: the third submission gets 429;
    one result stream per client at a time: the second gets 429 too."""
    srv = start_server(
        tmp_path_factory.mktemp("contract-full-server"),
        {"GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": "2", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "2",
         "GREENPOOL_MAX_STREAMS_PER_CLIENT": "1"},
    )
    yield srv
    srv.stop()


#: The tokens `auth_server` is configured with: (name, role, secret).
AUTH_TOKENS = (("alice", "submit", "alice-contract-secret-0001"), ("root", "admin", "root-contract-secret-00001"))


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with bearer tokens (`AUTH_TOKENS`) and /metrics behind them: 401 and 403 are reachable."""
    env = {
        "GREENPOOL_POOL_SIZE": "4",
        "GREENPOOL_TOKENS": ",".join(":".join(t) for t in AUTH_TOKENS),
        "GREENPOOL_METRICS_PUBLIC": "false",
    }
    srv = start_server(tmp_path_factory.mktemp("contract-auth-server"), env)
    yield srv
    srv.stop()

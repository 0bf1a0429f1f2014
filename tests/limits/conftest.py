"""Fixtures for the limit tests: one real server with every limit set small (see `LIMITS`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serverkit import Server, start_server

LIMITS = {
    "GREENPOOL_MAX_BODY_BYTES": "8192",
    "GREENPOOL_MAX_ARGS_BYTES": "1000",
    "GREENPOOL_MAX_RESULT_BYTES": "2000",
    "GREENPOOL_MAX_PILE_SIZE": "5",
    "GREENPOOL_MAX_MAP_ITEMS": "3",
    "GREENPOOL_MAX_STREAMS_PER_CLIENT": "2",
    "GREENPOOL_HEADER_TIMEOUT": "1.5",
    "GREENPOOL_BODY_TIMEOUT": "1.5",
    "GREENPOOL_STREAM_HEARTBEAT": "0.2",
    "GREENPOOL_PLUGINS": "tests.plugins.tasks",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small limits and a 10 s keep-alive (longer than the header timeout)."""
    server = start_server(tmp_path_factory.mktemp("limits"), env=LIMITS, args=("--keep-alive", "10"))
    yield server
    server.stop()

"""A real server for the stream tests: a pool large enough to run whole piles at once."""

from collections.abc import Iterator

import pytest
from serverkit import Server, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("streams"),
        env={"GREENPOOL_POOL_SIZE": "2000", "GREENPOOL_MAX_QUEUED": "50000", "GREENPOOL_MAX_BODY_BYTES": "8000000",
             "GREENPOOL_STREAM_HEARTBEAT": "0.5"},  # fmt: skip
        args=("--worker-connections", "3000", "--keep-alive", "30"),
    )
    yield srv
    srv.stop()


@pytest.fixture
def url(server: Server) -> str:
    return server.url

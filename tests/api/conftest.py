"""Fixtures for the API acceptance tests: `server_factory` starts real servers (see api_support.Server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import ServerFactory


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can show server stderr for failed tests."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _dump_on_failure(request: pytest.FixtureRequest, factory: ServerFactory) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for server in factory.servers:
            tail = "\n".join(server.stderr().splitlines()[-60:])
            print(f"\n--- server {server.port} stderr (last 60 lines) ---\n{tail}")


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start servers for one test; all stopped (SIGTERM, then SIGKILL) at its end."""
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        _dump_on_failure(request, factory)
        factory.close()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like `server_factory`, for servers shared by the tests of one module."""
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    try:
        yield factory
    finally:
        factory.close()

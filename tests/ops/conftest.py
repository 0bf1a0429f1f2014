"""Fixtures for the operations tests: `ops_server` starts real greenpool servers, always stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_support import OpsServer


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so the fixture can show server stderr for a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "ops_rep_" + report.when, report)


@pytest.fixture
def ops_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., OpsServer]]:
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
        report = getattr(request.node, "ops_rep_call", None)
        if report is not None and report.failed:
            for server in started:
                tail = "\n".join(server.stderr().splitlines()[-40:])
                print(f"\n--- server {server.port} stderr (last 40 lines) ---\n{tail}")

"""Root of the test tree: its presence puts tests/ on sys.path, so every suite can `import serverkit`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serverkit
from tools import headless_chromium


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """When a test fails, its report shows the log tail of every real server still running (serverkit)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for server in serverkit.RUNNING:
            report.sections.append((f"server {server.port} log (last {serverkit.LOG_TAIL} lines)", server.log_tail()))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless system Chromium driven by Selenium (skips naming the packages if it is not installed)."""
    with headless_chromium(tmp_path) as driver:
        yield driver

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


_DEFAULT_DATA = serverkit.REPO / "greenpool-data"  # the default store's directory (GREENPOOL_DATA_DIR)
_DEFAULT_DATA_WAS_THERE = _DEFAULT_DATA.exists()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test wrote the default store into the checkout (a server or Config without an
    explicit store: serverkit gives its servers GREENPOOL_STORE=memory, in-process tests must say so too)."""
    if not _DEFAULT_DATA_WAS_THERE and _DEFAULT_DATA.exists():
        print(f"\n{_DEFAULT_DATA} was created by this run: give that test an explicit store", flush=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless system Chromium driven by Selenium (skips naming the packages if it is not installed)."""
    with headless_chromium(tmp_path) as driver:
        yield driver

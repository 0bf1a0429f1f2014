"""The system commands tests drive for real (scripts/system-deps.txt): find them, or skip naming their package."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DEPS = Path(__file__).resolve().parents[1] / "scripts" / "system-deps.txt"
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"  # nginx lives here, off a non-root user's PATH
PACKAGES = dict(line.split() for line in DEPS.read_text().splitlines() if line.strip() and not line.startswith("#"))


def which(command: str) -> str | None:
    """The path of `command` on PATH or in the sbin directories; None if it is not installed."""
    assert command in PACKAGES, f"{command} is not listed in {DEPS}, so `make test` would not install it"
    return shutil.which(command) or shutil.which(command, path=SBIN)


def missing_reason(*commands: str) -> str | None:
    """Why a test that runs `commands` cannot: the missing ones and their Debian packages; None if none is."""
    missing = [command for command in commands if which(command) is None]
    if not missing:
        return None
    packages = " ".join(sorted({PACKAGES[command] for command in missing}))
    return (f"{' and '.join(missing)} not installed: Debian package(s) {packages} "
            "(`make test` installs them when run as root with apt-get)")  # fmt: skip


def needs(*commands: str) -> pytest.MarkDecorator:
    """A mark that skips a test, naming the packages, unless every one of `commands` is installed."""
    reason = missing_reason(*commands)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def require(*commands: str) -> list[str]:
    """For fixtures and helpers: the paths of `commands`, or skip the test naming the packages of missing ones."""
    reason = missing_reason(*commands)
    if reason is not None:
        pytest.skip(reason)
    return [which(command) for command in commands]


@contextlib.contextmanager
def headless_chromium(tmp_path: Path) -> Iterator[Any]:
    """A Selenium driver of the system Chromium, headless, fresh profile, console log kept (skips without it)."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = require("chromium", "chromedriver")
    options = Options()
    options.binary_location = chromium
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1280,1200"]  # fmt: skip
    for flag in [*flags, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        pytest.fail(f"chromium/chromedriver are installed but would not start: {exc.msg}")
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")
        time.sleep(interval)

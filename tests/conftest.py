"""Root of the test tree: its presence puts tests/ on sys.path, so every suite can `import serverkit`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools import headless_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless system Chromium driven by Selenium (skips naming the packages if it is not installed)."""
    with headless_chromium(tmp_path) as driver:
        yield driver

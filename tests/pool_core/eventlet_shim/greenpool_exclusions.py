"""A pytest plugin (`-p greenpool_exclusions`) that skips, with its reason, each test of eventlet's file that
`$GREENPOOL_EVENTLET_EXCLUDED` (JSON: "Class::test" or "test" → reason) names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run unless `eventlet` is the shim next to this plugin (never the real one)."""
    import eventlet

    if Path(eventlet.__file__).parent.parent != Path(__file__).parent:
        raise pytest.UsageError(f"eventlet is {eventlet.__file__}, not the pool_core shim")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the excluded tests skipped, so the run's report lists them with their reasons."""
    excluded = json.loads(os.environ["GREENPOOL_EVENTLET_EXCLUDED"])
    for item in items:
        reason = excluded.get(item.nodeid.split("::", 1)[1])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))

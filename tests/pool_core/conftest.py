"""Shared fixtures for the pool_core tests.

Every test runs in the main greenlet of one OS thread, so all tests share that thread's hub. After each
test the hub is left quiet: leftover timers (say, a Timeout a failing test left armed in the main
greenlet) are cancelled so they cannot fire inside a later test.
"""

import pytest

import pool_core
from pool_core.hub import get_hub


@pytest.fixture
def hub():
    return get_hub()


@pytest.fixture(autouse=True)
def _quiet_hub_after_test():
    yield
    hub = get_hub()
    for _deadline, _seq, timer in list(hub._timers):
        timer.cancel()
    pool_core.sleep(0)

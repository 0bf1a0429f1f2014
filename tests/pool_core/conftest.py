"""Shared fixtures for the pool_core tests.

Every test runs in the main greenlet of one OS thread, so all tests share that thread's hub. Modules
that use `quiet_hub` (`pytestmark = pytest.mark.usefixtures("quiet_hub")`) leave the hub quiet after
each test: leftover timers (say, a Timeout a failing test left armed in the main greenlet) are
cancelled so they cannot fire inside a later test.
"""

import pytest

import pool_core
from pool_core.hub import get_hub


@pytest.fixture
def hub():
    return get_hub()


@pytest.fixture
def loop_turns(hub, monkeypatch):
    """The timeouts of the hub's I/O waits, one per turn of its loop: a hub that spins shows many."""
    turns = []
    real_wait_io = hub._wait_io

    def counting_wait_io(timeout):
        turns.append(timeout)
        real_wait_io(timeout)

    monkeypatch.setattr(hub, "_wait_io", counting_wait_io)
    return turns


@pytest.fixture
def quiet_hub():
    hub = get_hub()
    before = {id(timer) for timer in hub.timers()}
    yield
    for timer in hub.timers():
        if id(timer) not in before:
            timer.cancel()
    pool_core.sleep(0)

"""The hub's fd table stays consistent when registering an fd fails."""

import tempfile

import pytest

import pool_core


@pytest.mark.timeout(5)
def test_a_failed_fd_registration_leaves_no_entry_behind():
    hub = pool_core.get_hub()
    with tempfile.TemporaryFile() as f:
        for _ in range(2):  # the second wait must fail the same way, not with "already has a waiter"
            with pytest.raises(PermissionError):
                hub.wait_read(f.fileno())
        assert f.fileno() not in hub._fds

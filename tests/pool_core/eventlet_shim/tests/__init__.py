"""The part of eventlet's `tests` helper package that `greenpool_test.py` uses, written for pool_core."""

from __future__ import annotations

import contextlib
import unittest
from collections.abc import Iterator

import pool_core


class TestIsTakingTooLong(Exception):
    """Raised in a test that runs longer than its TEST_TIMEOUT."""


class LimitedTestCase(unittest.TestCase):
    """A TestCase whose every test fails with TestIsTakingTooLong after TEST_TIMEOUT seconds (a Timeout)."""

    TEST_TIMEOUT = 2

    def setUp(self) -> None:
        """Arm the test's Timeout."""
        self.timer = pool_core.Timeout(self.TEST_TIMEOUT, TestIsTakingTooLong(self.TEST_TIMEOUT))

    def tearDown(self) -> None:
        """Disarm the Timeout and let green threads the test woke run once."""
        self.timer.cancel()
        pool_core.sleep(0)


@contextlib.contextmanager
def assert_raises(exc_type: type[BaseException]) -> Iterator[None]:
    """Fail unless the block raises `exc_type`."""
    try:
        yield
    except exc_type:
        pass
    else:
        raise AssertionError(f"Expected exception {exc_type.__name__}")

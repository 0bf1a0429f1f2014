"""A FIFO of parked greenlets: the one wait mechanism every synchronisation primitive shares.

`park()` returns True when woken, False when its timeout expired; a wake is never lost: if a greenlet is
woken but a kill or timeout reaches it first, the wake passes to the next waiter.
"""

from __future__ import annotations

from collections import deque

import greenlet

from .hub import get_hub

__all__ = ["WaitQueue"]

_getcurrent = greenlet.getcurrent


class _Expired(BaseException):
    """Thrown into a waiter whose own wait timed out (never escapes `park`)."""


class WaitQueue:
    """Greenlets parked in arrival order; wakers call `wake_one()` or `wake_all()`."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[greenlet.greenlet] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    def park(self, timeout: float | None = None) -> bool:
        """Park the caller until woken (True) or until `timeout` seconds pass (False)."""
        current = _getcurrent()
        hub = get_hub()
        self._waiters.append(current)
        timer = None if timeout is None else hub.call_later(timeout, self._expire, current)
        try:
            hub.park()
        except _Expired:
            return False
        except BaseException:
            try:
                self._waiters.remove(current)
            except ValueError:  # we had been woken: hand the wake to the next waiter
                self.wake_one()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return True

    def _expire(self, g: greenlet.greenlet) -> None:
        try:
            self._waiters.remove(g)
        except ValueError:  # already woken: the wake wins over the timeout
            return
        get_hub().throw(g, _Expired())

    def wake_one(self) -> bool:
        """Wake the longest-waiting greenlet; False if none waits."""
        if self._waiters:
            get_hub().wake(self._waiters.popleft())
            return True
        return False

    def wake_all(self) -> None:
        """Wake every waiting greenlet."""
        waiters = self._waiters
        if waiters:
            wake = get_hub().wake
            while waiters:
                wake(waiters.popleft())

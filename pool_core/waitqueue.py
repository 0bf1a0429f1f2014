"""A FIFO of parked greenlets: the one wait mechanism every synchronisation primitive shares.

`park()` returns True when woken, False when its timeout expired; a wake is never lost: if a greenlet is
woken but a kill or timeout reaches it first, the wake passes to the next waiter.
"""

from __future__ import annotations

from collections import deque

import greenlet

from .hub import WAKE, get_hub

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
        if timeout is None:
            try:
                hub.park()
            except BaseException:
                self._leave(current)
                raise
            return True
        expired = [False]  # set by _expire once it has taken `current` off the queue
        timer = hub.call_later(timeout, self._expire, current, expired)
        try:
            hub.park()
        except _Expired:
            return False
        except BaseException:  # e.g. a kill, possibly replacing our own pending expiry
            if not expired[0]:
                self._leave(current)
            raise
        finally:
            timer.cancel()
        return True

    def _leave(self, g: greenlet.greenlet) -> None:
        """Take `g`, parked but resumed by an exception, off the queue; if a wake had reached it
        already, hand that wake to the next waiter so it is never lost."""
        try:
            self._waiters.remove(g)
        except ValueError:
            self.wake_one()

    def _expire(self, g: greenlet.greenlet, expired: list) -> None:
        pending = getattr(g, "gp_pending", None)
        if pending is not None and pending is not WAKE:  # an exception is on its way: it wins, and
            return  # `park` takes `g` off the queue
        try:
            self._waiters.remove(g)
        except ValueError:  # already woken: the wake wins over the timeout
            return
        expired[0] = True
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

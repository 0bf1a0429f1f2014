"""`Semaphore` and `BoundedSemaphore`, with eventlet's API (acquire/release, counter, context manager).

Waiters are woken in FIFO order, but the semaphore is not strictly fair: a green thread calling
`acquire()` between a `release()` and the woken waiter's turn may take the unit first (the woken one
then waits again, at the back of the queue).
"""

from __future__ import annotations

from time import monotonic as _monotonic
from typing import Any

from .waitqueue import WaitQueue

__all__ = ["Semaphore", "BoundedSemaphore"]


class Semaphore:
    """A counter of units: `acquire` takes one (parking while none is left), `release` returns one."""

    def __init__(self, value: int = 1) -> None:
        if not isinstance(value, int):
            raise TypeError(f"Semaphore value must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"Semaphore must be initialized with a non-negative value, got {value}")
        self.counter = value
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} counter={self.counter} waiters={len(self._waiters)}>"

    def locked(self) -> bool:
        """True when `acquire()` would park."""
        return self.counter <= 0

    @property
    def balance(self) -> int:
        """Units left minus green threads waiting for one."""
        return self.counter - len(self._waiters)

    def bounded(self) -> bool:
        """False: a plain Semaphore may be released above its initial value."""
        return False

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a unit; False if none was free without blocking or before `timeout` seconds passed."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        if self.counter > 0 and not len(self._waiters):
            self.counter -= 1
            return True
        if not blocking:
            return False
        if timeout is None:
            while self.counter <= 0:
                self._waiters.park()
        else:  # a deadline: a wake taken by someone else must not restart the timeout
            deadline = _monotonic() + timeout
            while self.counter <= 0:
                left = deadline - _monotonic()
                if left <= 0 or not self._waiters.park(left):
                    return False
        self.counter -= 1
        if self.counter > 0:  # several released at once: let the next waiter look too
            self._waiters.wake_one()
        return True

    def release(self, blocking: bool = True) -> bool:
        """Return a unit and wake the longest waiter."""
        self.counter += 1
        self._waiters.wake_one()
        return True

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A Semaphore that refuses (ValueError) to be released above its initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self.original_counter = value

    def bounded(self) -> bool:
        """True: releasing above the initial value raises ValueError."""
        return True

    def release(self, blocking: bool = True) -> bool:
        """Return a unit; ValueError if that would exceed the initial value."""
        if self.counter >= self.original_counter:
            raise ValueError("Semaphore released too many times")
        return super().release(blocking)

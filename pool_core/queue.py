"""`LightQueue` and `Queue` (with `task_done`/`join`): FIFO queues between green threads.

`maxsize=None` (or negative) is unbounded; `maxsize=0` is a channel: `put` waits until a getter is there
to take the item. `Empty` and `Full` are the standard library's exceptions, as in eventlet.
"""

from __future__ import annotations

import time
from collections import deque
from queue import Empty, Full
from typing import Any

from .waitqueue import WaitQueue

__all__ = ["LightQueue", "Queue", "Empty", "Full"]


class LightQueue:
    """A FIFO queue; `get` parks while empty, `put` parks while full (both accept block and timeout)."""

    def __init__(self, maxsize: int | None = None) -> None:
        self.maxsize = None if maxsize is None or maxsize < 0 else maxsize
        self.queue: deque[Any] = deque()
        self._getters = WaitQueue()
        self._putters = WaitQueue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} maxsize={self.maxsize} qsize={len(self.queue)}>"

    def qsize(self) -> int:
        """Items in the queue now."""
        return len(self.queue)

    __len__ = qsize

    def empty(self) -> bool:
        return not self.queue

    def full(self) -> bool:
        """True when a `put` would park."""
        return self.maxsize is not None and len(self.queue) >= self.maxsize + len(self._getters)

    def getting(self) -> int:
        """Green threads parked in `get`."""
        return len(self._getters)

    def putting(self) -> int:
        """Green threads parked in `put`."""
        return len(self._putters)

    def resize(self, size: int | None) -> None:
        """Change `maxsize`; growing it lets parked putters proceed."""
        self.maxsize = None if size is None or size < 0 else size
        for _ in range(len(self._putters)):
            if self.full():
                break
            self._putters.wake_one()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Append `item`, parking while the queue is full; Full if it stays full (or `block` is False)."""
        if self.full():
            if not block:
                raise Full
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.full():
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not self._putters.park(left):
                    raise Full
        self.queue.append(item)
        self._getters.wake_one()

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, parking while empty; Empty if it stays empty."""
        if not self.queue:
            if not block:
                raise Empty
            deadline = None if timeout is None else time.monotonic() + timeout
            if self.maxsize == 0:
                self._putters.wake_one()  # a channel's putter waits for a getter to appear
            while not self.queue:
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not self._getters.park(left):
                    raise Empty
        item = self.queue.popleft()
        self._putters.wake_one()
        if self.queue:
            self._getters.wake_one()
        return item

    def get_nowait(self) -> Any:
        return self.get(False)


class Queue(LightQueue):
    """A LightQueue that also counts unfinished items: `task_done()` and `join()`."""

    def __init__(self, maxsize: int | None = None) -> None:
        super().__init__(maxsize)
        self.unfinished_tasks = 0
        self._joiners = WaitQueue()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.unfinished_tasks += 1

    def task_done(self) -> None:
        """Mark one item as processed; wakes `join()` when none is left. ValueError if overcalled."""
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        if self.unfinished_tasks == 0:
            self._joiners.wake_all()

    def join(self, timeout: float | None = None) -> bool:
        """Park until every item put has been marked done; False if `timeout` expired first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.unfinished_tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self._joiners.park(left):
                return False
        return True

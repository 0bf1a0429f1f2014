"""The hub's timers: a heap of deadlines whose cancellation is nearly free.

Most timers are cancelled before they fire (every long-poll and job timeout is such a timer), so `cancel()`
only marks its entry; the heap drops marked entries as they reach the top, and is compacted when they
outnumber the live ones. Entries with the same deadline fire in the order they were added.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "TimerQueue"]

log = logging.getLogger("pool_core")

_monotonic = time.monotonic
_COMPACT_MIN = 256


class Timer:
    """A scheduled callback; `cancel()` is O(1) and idempotent."""

    __slots__ = ("queue", "callback", "args", "pending")

    def __init__(self, queue: TimerQueue, callback: Callable[..., Any], args: tuple) -> None:
        self.queue = queue
        self.callback = callback
        self.args = args
        self.pending = True

    def cancel(self) -> None:
        """Stop the timer from firing; harmless after it fired or was cancelled."""
        if self.pending:
            self.pending = False
            self.callback = self.args = None
            self.queue.cancelled += 1


class TimerQueue:
    """One hub's timers: `heap` holds (deadline, sequence, Timer); `cancelled` counts marked entries in it."""

    __slots__ = ("heap", "cancelled", "_seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Timer]] = []
        self.cancelled = 0
        self._seq = 0

    def add(self, delay: float, callback: Callable[..., Any], args: tuple) -> Timer:
        """Schedule `callback(*args)` in `delay` seconds."""
        timer = Timer(self, callback, args)
        self._seq += 1
        heapq.heappush(self.heap, (_monotonic() + delay, self._seq, timer))
        return timer

    def live(self) -> list[Timer]:
        """The timers still to fire, earliest first."""
        return [entry[2] for entry in sorted(self.heap) if entry[2].pending]

    def next_delay(self) -> float | None:
        """Seconds until the earliest live timer is due (0 when overdue); None when there is none."""
        heap = self.heap
        while heap and not heap[0][2].pending:
            heapq.heappop(heap)
            self.cancelled -= 1
        if heap:
            return max(0.0, heap[0][0] - _monotonic())
        return None

    def fire_due(self) -> None:
        """Run every timer that is due, in deadline order; a failing callback is logged, the rest still run."""
        heap = self.heap
        now = _monotonic()
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.pending:
                self.cancelled -= 1
                continue
            timer.pending = False
            callback, args = timer.callback, timer.args
            timer.callback = timer.args = None
            try:
                callback(*args)
            except BaseException:
                log.exception("pool_core: timer callback %r failed", callback)
        if self.cancelled > _COMPACT_MIN and self.cancelled * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2].pending]
            heapq.heapify(heap)
            self.cancelled = 0

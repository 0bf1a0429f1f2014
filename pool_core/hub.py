"""The hub: one scheduler greenlet per OS thread.

What it does, and nothing more:
  * runs resumable greenlets first-in first-out from a ready deque;
  * fires timers from a heap (cancelling a timer is O(1): it is only marked, and the heap is
    compacted when cancelled entries dominate — most timeouts are cancelled before they fire);
  * wakes greenlets waiting for file-descriptor readiness, through `selectors` (epoll on Linux).

Every resume goes through the ready deque, and a greenlet holds at most one pending resume: `wake`
while one is pending is a no-op, `throw` replaces a pending wake or exception — but never a pending
kill (GreenletExit). So no greenlet is ever resumed twice for one park, a kill or timeout can never be
followed by a stale wake-up, and a timeout firing in the same turn cannot undo a kill.

It refuses everything else: green threads, events, queues, semaphores, timeouts, pools and piles are
built in their own modules on four primitives — `park()`, `wake(g)`, `throw(g, exc)`,
`call_later(delay, fn, *args)` — plus `wait_read` / `wait_write` for sockets. An exception escaping a
greenlet or a callback is logged with its traceback and never stops the loop.
"""

from __future__ import annotations

import heapq
import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import greenlet

__all__ = ["Hub", "LoopExit", "Timer", "get_hub", "WAKE"]

log = logging.getLogger("pool_core")

#: The pending-resume marker for a plain wake-up (anything else pending is an exception to throw).
WAKE = object()
_monotonic = time.monotonic
_getcurrent = greenlet.getcurrent
_COMPACT_MIN = 256
GreenletExit = greenlet.GreenletExit


class LoopExit(RuntimeError):
    """Raised in the hub's parent when it parks with nothing left that could ever wake it."""


class Timer:
    """A scheduled callback; `cancel()` is O(1) and idempotent."""

    __slots__ = ("hub", "callback", "args", "pending")

    def __init__(self, hub: Hub, callback: Callable[..., Any], args: tuple) -> None:
        self.hub = hub
        self.callback = callback
        self.args = args
        self.pending = True

    def cancel(self) -> None:
        """Stop the timer from firing; harmless after it fired or was cancelled."""
        if self.pending:
            self.pending = False
            self.callback = self.args = None
            self.hub._cancelled += 1


class _FdWaiters:
    """The greenlets parked on one fd: at most one reader and one writer."""

    __slots__ = ("reader", "writer", "closed")

    def __init__(self) -> None:
        self.reader: greenlet.greenlet | None = None
        self.writer: greenlet.greenlet | None = None
        self.closed = False

    def mask(self) -> int:
        return (selectors.EVENT_READ if self.reader else 0) | (selectors.EVENT_WRITE if self.writer else 0)


class Hub:
    """The scheduler of one OS thread. Obtain it with `get_hub()`; never construct two per thread."""

    def __init__(self) -> None:
        self.ready: deque[greenlet.greenlet] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._cancelled = 0
        self._seq = 0
        self._selector = selectors.DefaultSelector()
        self._fds: dict[int, _FdWaiters] = {}
        #: Parked worker greenlets kept for reuse by `greenthread` (creating a greenlet costs ~50 switches).
        self.idle_workers: list[greenlet.greenlet] = []
        #: When the current pass over the ready deque began: lets busy green threads yield fairly.
        self.pass_started = _monotonic()
        self.greenlet = greenlet.greenlet(self._run)
        self.thread_ident = threading.get_ident()

    # -- the primitives everything else is built on ---------------------------------------------
    def park(self) -> None:
        """Suspend the calling greenlet until someone `wake`s it (returns) or `throw`s into it (raises)."""
        self.greenlet.switch()

    def wake(self, g: greenlet.greenlet) -> None:
        """Make `g` runnable. A no-op when `g` already has a resume pending."""
        if getattr(g, "gp_pending", None) is None:
            g.gp_pending = WAKE
            self.ready.append(g)

    def throw(self, g: greenlet.greenlet, exc: BaseException) -> None:
        """Resume `g` by raising `exc` at its park point; replaces a wake or exception still pending,
        except a pending kill (GreenletExit): a timeout firing in the same turn must not undo a kill."""
        pending = getattr(g, "gp_pending", None)
        if pending is None:
            self.ready.append(g)
        elif pending.__class__ is GreenletExit:
            return
        g.gp_pending = exc

    def yield_now(self) -> None:
        """Let every other runnable greenlet run once, then continue (`sleep(0)`)."""
        g = _getcurrent()
        g.gp_pending = WAKE
        self.ready.append(g)
        self.greenlet.switch()

    def yield_if_pass_longer(self, seconds: float) -> None:
        """`yield_now()` if the current pass has run for more than `seconds`: a green thread that always
        finds work ready (e.g. a keep-alive connection with requests queued) lets I/O and timers in."""
        if _monotonic() - self.pass_started > seconds:
            self.yield_now()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run `callback(*args)` in the hub after `delay` seconds; returns a cancellable Timer."""
        timer = Timer(self, callback, args)
        self._seq += 1
        heapq.heappush(self._timers, (_monotonic() + delay, self._seq, timer))
        return timer

    # -- file descriptors -----------------------------------------------------------------------
    def wait_read(self, fd: int, timeout: float | None = None, exc: BaseException | None = None) -> None:
        """Park until `fd` is readable; raise `exc` (default TimeoutError) after `timeout` seconds."""
        self._wait_fd(fd, True, timeout, exc)

    def wait_write(self, fd: int, timeout: float | None = None, exc: BaseException | None = None) -> None:
        """Park until `fd` is writable; raise `exc` (default TimeoutError) after `timeout` seconds."""
        self._wait_fd(fd, False, timeout, exc)

    def _wait_fd(self, fd: int, read: bool, timeout: float | None, exc: BaseException | None) -> None:
        current = _getcurrent()
        waiters = self._fds.get(fd)
        if waiters is None:
            waiters = self._fds[fd] = _FdWaiters()
        slot = "reader" if read else "writer"
        if getattr(waiters, slot) is not None:
            raise RuntimeError(f"fd {fd} already has a green thread waiting to {'read' if read else 'write'}")
        old_mask = waiters.mask()
        setattr(waiters, slot, current)
        try:
            self._update_fd(fd, old_mask, waiters.mask())
        except BaseException:  # e.g. a regular file (EPERM) or a closed fd (EBADF): leave no entry behind
            setattr(waiters, slot, None)
            if waiters.reader is None and waiters.writer is None:
                del self._fds[fd]
            raise
        timer = None
        if timeout is not None:
            timer = self.call_later(timeout, self._expire_fd, current, exc or TimeoutError("timed out"))
        try:
            self.greenlet.switch()
        finally:
            if timer is not None:
                timer.cancel()
            if getattr(waiters, slot) is current:
                old_mask = waiters.mask()
                setattr(waiters, slot, None)
                self._update_fd(fd, old_mask, waiters.mask())
            if waiters.reader is None and waiters.writer is None and self._fds.get(fd) is waiters:
                del self._fds[fd]
        if waiters.closed:
            raise OSError(9, "Bad file descriptor: socket closed while a green thread waited on it")

    def _expire_fd(self, g: greenlet.greenlet, exc: BaseException) -> None:
        # A resume already pending for `g` (a kill, a Timeout) ends the wait anyway: it must not be replaced.
        if getattr(g, "gp_pending", None) is None:
            self.throw(g, exc)

    def _update_fd(self, fd: int, old: int, new: int) -> None:
        if old == new:
            return
        if not old:
            self._selector.register(fd, new)
        elif not new:
            self._selector.unregister(fd)
        else:
            self._selector.modify(fd, new)

    def notify_close(self, fd: int) -> None:
        """Wake every greenlet waiting on `fd` with an error, before the fd is closed."""
        waiters = self._fds.pop(fd, None)
        if waiters is None:
            return
        waiters.closed = True
        if waiters.mask():
            self._selector.unregister(fd)
        for g in (waiters.reader, waiters.writer):
            if g is not None:
                self.wake(g)
        waiters.reader = waiters.writer = None

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        ready = self.ready
        popleft = ready.popleft
        timers = self._timers
        while True:
            if timers:
                self._fire_timers()
            if self._fds or not ready:
                self._wait_io(0.0 if ready else self._next_deadline())
            self.pass_started = _monotonic()
            for _ in range(len(ready)):
                g = popleft()
                action = g.gp_pending
                g.gp_pending = None
                try:
                    if action is WAKE:
                        g.switch()
                    else:
                        g.throw(action)
                except BaseException:
                    log.exception("pool_core: exception escaped greenlet %r", g)

    def _next_deadline(self) -> float | None:
        timers = self._timers
        while timers and not timers[0][2].pending:
            heapq.heappop(timers)
            self._cancelled -= 1
        if timers:
            return max(0.0, timers[0][0] - _monotonic())
        if not self._fds:
            self._deadlock()
        return None

    def _deadlock(self) -> None:
        parent = self.greenlet.parent
        parent.gp_pending = None
        self.ready.clear()
        parent.throw(LoopExit("pool_core: this would wait forever: nothing is left that could wake it"))

    def _wait_io(self, timeout: float | None) -> None:
        if not self._fds:
            if timeout:
                time.sleep(timeout)
            return
        for key, events in self._selector.select(timeout):
            waiters = self._fds.get(key.fd)
            if waiters is None:
                continue
            if events & selectors.EVENT_READ and waiters.reader is not None:
                self.wake(waiters.reader)
            if events & selectors.EVENT_WRITE and waiters.writer is not None:
                self.wake(waiters.writer)

    def _fire_timers(self) -> None:
        timers = self._timers
        now = _monotonic()
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if not timer.pending:
                self._cancelled -= 1
                continue
            timer.pending = False
            callback, args = timer.callback, timer.args
            timer.callback = timer.args = None
            try:
                callback(*args)
            except BaseException:
                log.exception("pool_core: timer callback %r failed", callback)
        if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(timers):
            self._timers[:] = [entry for entry in timers if entry[2].pending]
            heapq.heapify(self._timers)
            self._cancelled = 0


_local = threading.local()


def get_hub() -> Hub:
    """The hub of the calling OS thread, created on first use."""
    try:
        return _local.hub
    except AttributeError:
        hub = _local.hub = Hub()
        return hub

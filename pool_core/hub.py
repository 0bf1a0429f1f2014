"""The hub: one scheduler greenlet per OS thread.

It does three things: runs ready greenlets first-in first-out, fires due timers (`timers`), and wakes
greenlets waiting for fd readiness through epoll (`poller` where there is none). Every resume goes through
the ready deque and a greenlet holds at most one pending resume: `wake` while one is pending is a no-op,
`throw` replaces a pending wake or exception but never a pending kill, so no greenlet is resumed twice for
one park and a timeout firing in the same turn cannot undo a kill.

It refuses everything else: green threads, events, queues, semaphores, timeouts, pools and piles live in
their own modules, built on `park()`, `wake(g)`, `throw(g, exc)`, `call_later(delay, fn, *args)` and
`wait_read` / `wait_write`. An exception escaping a greenlet or a callback is logged, never stops the loop.
"""

from __future__ import annotations

import errno
import itertools
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import greenlet

from .poller import IN as _IN
from .poller import OUT as _OUT
from .poller import SelectorPoller
from .timers import Timer, TimerQueue

__all__ = ["Hub", "LoopExit", "Timer", "WAKE", "get_hub", "new_fd_owner", "reinit_after_fork"]

log = logging.getLogger("pool_core")

#: The pending-resume marker for a plain wake-up (anything else pending is an exception to throw).
WAKE = object()
_monotonic = time.monotonic
_getcurrent = greenlet.getcurrent
GreenletExit = greenlet.GreenletExit
#: What wakes a reader (anything but "writable": data, hang-up, error) and a writer — selectors' rule.
_READABLE = ~_OUT
_WRITABLE = ~_IN
_owner_ids = itertools.count(1)


def new_fd_owner() -> int:
    """A fresh owner number for `wait_read` / `wait_write`: name one open file with it, never another."""
    return next(_owner_ids)


class LoopExit(RuntimeError):
    """Raised in the hub's parent when it parks with nothing left that could ever wake it."""


class _Fd:
    """One fd the hub watches: its epoll mask, who armed it, and its parked greenlets (one reader, one writer)."""

    __slots__ = ("events", "owner", "reader", "writer", "closed")

    def __init__(self) -> None:
        self.events = 0  # the mask epoll watches; 0: not registered
        self.owner = 0  # the owner whose park last set the registration up (0: an anonymous park)
        self.reader: greenlet.greenlet | None = None
        self.writer: greenlet.greenlet | None = None
        self.closed = False


_new_poller: Callable[[], Any] = getattr(select, "epoll", SelectorPoller)


class Hub:
    """The scheduler of one OS thread. Obtain it with `get_hub()`; never construct two per thread."""

    def __init__(self) -> None:
        self.ready: deque[greenlet.greenlet] = deque()
        self._timers = TimerQueue()
        #: The epoll object (a `SelectorPoller` without epoll); a forked child closes its parent's.
        self._selector = _new_poller()
        #: Every fd epoll watches, with a parked greenlet or idle.
        self._armed: dict[int, _Fd] = {}
        #: The fds a greenlet is parked on: only these could wake anyone (see `_next_deadline`).
        self._fds: dict[int, _Fd] = {}
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

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run `callback(*args)` in the hub after `delay` seconds; returns a cancellable Timer."""
        return self._timers.add(delay, callback, args)

    # -- what callers may ask of the hub (and tests check) ----------------------------------------
    def pending_exception(self, g: greenlet.greenlet) -> BaseException | None:
        """The exception `g` is about to be resumed with (a kill, a timeout), or None (none, or a plain wake)."""
        pending = getattr(g, "gp_pending", None)
        return None if pending is None or pending is WAKE else pending

    def timers(self) -> list[Timer]:
        """The timers still to fire, earliest first."""
        return self._timers.live()

    def is_quiet(self) -> bool:
        """True when nothing could run: no greenlet ready, no timer to fire, no greenlet waiting on an fd."""
        return not self.ready and not self._fds and self._timers.next_delay() is None

    def close(self) -> None:
        """Release the hub's epoll descriptor (a forked child must not keep, or use, its parent's)."""
        self._selector.close()

    # -- file descriptors -----------------------------------------------------------------------
    # Armed lazily, watched level-triggered. A park makes sure epoll watches the fd for its direction (ADD or
    # MOD); waking leaves it armed, so the next park on it (a connection's next recv) costs no system call.
    # An event nobody waits for (data that came while the connection's green thread was busy, a hang-up)
    # disarms its direction then (MOD, or DEL when nothing is left: a hang-up ignores a zero mask), so it
    # cannot make the loop spin. Only a park naming the `owner` that armed the fd (`new_fd_owner()`, one per
    # open file: each GreenSocket has one) trusts the table: an fd closed without `notify_close` has left
    # epoll and its number may name another file now, so any other park confirms its registration with one
    # epoll_ctl (ENOENT -> ADD, EEXIST -> MOD). A registration no fd reaches any more (closed while a
    # duplicate keeps its file open) makes the hub rebuild its epoll set. Idle armed fds never count as
    # something that could wake a greenlet: LoopExit still comes.
    def wait_read(
        self, fd: int, timeout: float | None = None, exc: BaseException | None = None, owner: int = 0
    ) -> None:
        """Park until `fd` is readable; raise `exc` (default TimeoutError) after `timeout` seconds.
        `owner` (`new_fd_owner()`) lets a park on an fd this owner armed before skip the system call."""
        self._wait_fd(fd, _IN, timeout, exc, owner)

    def wait_write(
        self, fd: int, timeout: float | None = None, exc: BaseException | None = None, owner: int = 0
    ) -> None:
        """Park until `fd` is writable; raise `exc` (default TimeoutError) after `timeout` seconds.
        `owner` (`new_fd_owner()`) lets a park on an fd this owner armed before skip the system call."""
        self._wait_fd(fd, _OUT, timeout, exc, owner)

    def _wait_fd(self, fd: int, flag: int, timeout: float | None, exc: BaseException | None, owner: int) -> None:
        current = _getcurrent()
        entry = self._armed.get(fd)
        if entry is None:
            entry = _Fd()
        reading = flag == _IN
        if (entry.reader if reading else entry.writer) is not None:
            raise RuntimeError(f"fd {fd} already has a green thread waiting to {'read' if reading else 'write'}")
        if not (owner and owner == entry.owner and entry.events & flag):
            self._arm(fd, entry, flag, owner)
        if reading:
            entry.reader = current
        else:
            entry.writer = current
        fds = self._fds
        fds[fd] = entry
        timer = None
        if timeout is not None:
            timer = self.call_later(timeout, self._expire_fd, current, exc or TimeoutError("timed out"))
        try:
            self.greenlet.switch()
        finally:
            if timer is not None:
                timer.cancel()
            if reading:
                if entry.reader is current:
                    entry.reader = None
            elif entry.writer is current:
                entry.writer = None
            if entry.reader is None and entry.writer is None and fds.get(fd) is entry:
                del fds[fd]
        if entry.closed:
            raise OSError(9, "Bad file descriptor: socket closed while a green thread waited on it")

    def _arm(self, fd: int, entry: _Fd, flag: int, owner: int) -> None:
        """Have epoll watch `fd` for `flag` too, whatever the table believed: an fd closed without
        `notify_close` has left epoll (MOD: ENOENT), and its number may name a file that never entered it."""
        mask = entry.events | flag
        poller = self._selector
        try:
            if entry.events:
                try:
                    poller.modify(fd, mask)
                except FileNotFoundError:
                    entry.events = 0
                    poller.register(fd, mask)
            else:
                try:
                    poller.register(fd, mask)
                except FileExistsError:
                    poller.modify(fd, mask)
        except BaseException:  # e.g. a regular file (EPERM) or a closed fd (EBADF): leave no entry behind
            if entry.reader is None and entry.writer is None and self._armed.get(fd) is entry:
                del self._armed[fd]
            raise
        entry.events = mask
        entry.owner = owner
        self._armed[fd] = entry

    def _expire_fd(self, g: greenlet.greenlet, exc: BaseException) -> None:
        # A resume already pending for `g` (a kill, a Timeout) ends the wait anyway: it must not be replaced.
        if getattr(g, "gp_pending", None) is None:
            self.throw(g, exc)

    def notify_close(self, fd: int) -> None:
        """Disarm and forget `fd` before it is closed; greenlets parked on it wake with OSError(EBADF)."""
        entry = self._armed.pop(fd, None)
        if entry is None:
            return
        if self._fds.get(fd) is entry:
            del self._fds[fd]
        entry.closed = True
        for g in (entry.reader, entry.writer):
            if g is not None:
                self.wake(g)
        entry.reader = entry.writer = None
        try:
            self._selector.unregister(fd)
        except OSError as exc:  # ENOENT, EBADF: already closed, so already out of epoll
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                raise

    def _disarm(self, fd: int, entry: _Fd, keep: int) -> bool:
        """Stop epoll reporting on `fd` what nobody waits for (level-triggered, it would on every poll).
        False when `fd` does not reach that registration any more: see `_rebuild`."""
        try:
            if keep:
                self._selector.modify(fd, keep)
            else:
                self._selector.unregister(fd)
        except OSError:
            return False
        if keep:
            entry.events = keep
        else:
            del self._armed[fd]
        return True

    def _rebuild(self) -> None:
        """Replace the epoll set with one watching only the fds greenlets are parked on: the one way to drop
        a registration no fd reaches any more (its fd was closed without `notify_close` while a duplicate
        keeps the file open), which epoll would report on every poll."""
        old, self._selector = self._selector, _new_poller()
        old.close()
        armed = self._armed
        armed.clear()
        for fd, entry in self._fds.items():
            mask = (_IN if entry.reader is not None else 0) | (_OUT if entry.writer is not None else 0)
            try:
                self._selector.register(fd, mask)
            except OSError:  # closed under its waiters: they retry their call and meet the error themselves
                entry.events = 0
                for g in (entry.reader, entry.writer):
                    if g is not None:
                        self.wake(g)
                continue
            entry.events = mask
            armed[fd] = entry

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        ready = self.ready
        popleft = ready.popleft
        timers = self._timers
        heap = timers.heap
        while True:
            if heap:
                timers.fire_due()
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
        delay = self._timers.next_delay()
        if delay is None and not self._fds:
            self._deadlock()
        return delay

    def _deadlock(self) -> None:
        parent = self.greenlet.parent
        parent.gp_pending = None
        self.ready.clear()
        parent.throw(LoopExit("pool_core: this would wait forever: nothing is left that could wake it"))

    def _wait_io(self, timeout: float | None) -> None:
        if not self._fds:  # idle armed fds wake nobody: their events can wait for the next poll
            if timeout:
                time.sleep(timeout)
            return
        armed = self._armed
        append = self.ready.append
        lost = False
        for fd, events in self._selector.poll(timeout):
            entry = armed.get(fd)
            if entry is None:  # a registration the table forgot: only a rebuild can drop it
                lost = True
                continue
            unwanted = 0
            if events & _READABLE:
                g = entry.reader
                if g is None:
                    unwanted = _IN
                elif getattr(g, "gp_pending", None) is None:
                    g.gp_pending = WAKE
                    append(g)
            if events & _WRITABLE:
                g = entry.writer
                if g is None:
                    unwanted |= _OUT
                elif getattr(g, "gp_pending", None) is None:
                    g.gp_pending = WAKE
                    append(g)
            if unwanted & entry.events and not self._disarm(fd, entry, entry.events & ~unwanted):
                lost = True
        if lost:
            self._rebuild()


_local = threading.local()


def get_hub() -> Hub:
    """The hub of the calling OS thread, created on first use."""
    try:
        return _local.hub
    except AttributeError:
        hub = _local.hub = Hub()
        return hub


def reinit_after_fork() -> bool:
    """In a forked child: give this thread a fresh hub and close the inherited one's epoll descriptor (shared
    with the parent). Green threads of the old hub never run in the child; False when it had any (ready,
    timed or waiting on an fd) so the caller can warn, True when it was quiet or there was none."""
    old = getattr(_local, "hub", None)
    _local.hub = Hub()
    if old is None:
        return True
    quiet = old.is_quiet()
    old.close()
    return quiet

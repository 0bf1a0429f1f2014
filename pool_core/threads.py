"""Run blocking callables on real OS threads while the calling green thread waits cooperatively.

`execute(fn, *args, **kwargs)` hands the call to a bounded pool of OS threads (`set_num_threads`, or the
environment variable POOL_CORE_THREADS, default 20) and parks the calling green thread; the hub keeps
running every other green thread meanwhile. The call's result is returned, or its exception re-raised,
in the caller. A `ThreadPool` is such a pool of its own (resizable; its threads start on demand and stop
when it shrinks); `ThreadPool.start` returns a `ThreadCall` that may be waited for again after the wait
was interrupted, so a caller can tell a call that never started (`cancel()`) from one that runs on.

How the hub hears about a finished call, without ever polling: each hub owns a non-blocking pipe and a
thread-safe deque. The OS thread appends the finished call to the deque and writes one byte to the pipe.
One *waker* green thread per hub waits on the pipe's read end with `wait_read`, drains it, and wakes
the callers whose calls are in the deque. The waker exists only while some green thread waits in
`execute`; its wait on the pipe is what keeps the hub from declaring a deadlock (LoopExit) meanwhile (the
pipe stays armed in the hub between waits, which the hub does not count).

Killing or timing out a green thread blocked in `execute` raises in it at once. The OS thread cannot be
interrupted: it finishes in the background and its result is dropped (a call still queued is cancelled).
The threads are daemon threads: a process may exit while one is still stuck in a call.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import greenlet

from .greenthread import spawn_n
from .hub import Hub, get_hub, new_fd_owner

__all__ = ["Doorbell", "ThreadCall", "ThreadPool", "execute", "get_num_threads", "set_num_threads"]

T = TypeVar("T")
DEFAULT_THREADS = 20
_getcurrent = greenlet.getcurrent


def _threads_from_env() -> int:
    value = os.environ.get("POOL_CORE_THREADS", "")
    try:
        n = int(value)
    except ValueError:
        return DEFAULT_THREADS
    return n if n > 0 else DEFAULT_THREADS


class ThreadPool:
    """At most `size` OS threads running calls from a FIFO of pending ones; threads start when a call finds
    none idle and stop when they are above the size (so shrinking takes effect as running calls end)."""

    def __init__(self, size: int, name: str = "pool_core.threads") -> None:
        if size < 1:
            raise ValueError("the thread pool needs at least one thread")
        self.size, self.name = size, name
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[ThreadCall] = deque()
        self._threads = 0  # OS threads alive
        self._idle = 0  # threads waiting for a call and not yet notified of one

    @property
    def threads(self) -> int:
        """OS threads alive now (busy or idle)."""
        return self._threads

    def resize(self, size: int) -> None:
        """Bound the pool to `size` threads: more start for pending calls; idle ones above it stop now."""
        if size < 1:
            raise ValueError("the thread pool needs at least one thread")
        with self._cond:
            self.size, self._idle = size, 0
            self._cond.notify_all()  # idle threads re-check: take a pending call, stop, or wait again
            for _ in range(min(len(self._pending), size - self._threads)):
                self._start_thread()

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ThreadCall:
        """Queue `fn(*args, **kwargs)` for an OS thread and return its handle (call `wait()` from a green thread)."""
        call = ThreadCall(self, fn, args, kwargs)
        with self._cond:
            self._pending.append(call)
            if self._idle:
                self._idle -= 1
                self._cond.notify()
            elif self._threads < self.size:
                self._start_thread()
        return call

    def execute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`start(...).wait()`; a caller killed while the call is still pending cancels it."""
        call = self.start(fn, *args, **kwargs)
        try:
            return call.wait()
        except BaseException:
            call.cancel()
            raise

    def _start_thread(self) -> None:  # with the lock held
        self._threads += 1
        threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()

    def _take(self) -> ThreadCall | None:
        """The next pending call for this thread, or None when it is to stop."""
        with self._cond:
            while True:
                if self._threads > self.size:
                    self._threads -= 1
                    return None
                if self._pending:
                    call = self._pending.popleft()
                    call.state = _RUNNING
                    return call
                self._idle += 1
                self._cond.wait()

    def _work(self) -> None:
        while (call := self._take()) is not None:
            call.run()

    def _cancel(self, call: ThreadCall) -> bool:
        with self._cond:
            if call.state != _PENDING:
                return False
            self._pending.remove(call)
            call.state = _CANCELLED
            return True


_PENDING, _RUNNING, _DONE, _CANCELLED = "pending", "running", "done", "cancelled"


class ThreadCall:
    """One call handed to a ThreadPool: `wait()` for its result, `cancel()` it while it is still pending."""

    __slots__ = ("pool", "fn", "args", "kwargs", "state", "result", "exc", "_call", "_link")

    def __init__(self, pool: ThreadPool, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.pool, self.fn, self.args, self.kwargs = pool, fn, args, kwargs
        self.state = _PENDING  # pending → running → done, or pending → cancelled (changed under the pool's lock)
        self.result: Any = None
        self.exc: BaseException | None = None
        self._link = _link()  # the hub of the green thread that started it hears when it ends
        self._call = _Call(None)

    @property
    def started(self) -> bool:
        """True once an OS thread has taken the call (it can no longer be cancelled)."""
        return self.state in (_RUNNING, _DONE)

    def cancel(self) -> bool:
        """Drop the call if no OS thread has taken it yet; False if it runs (or ran)."""
        return self.pool._cancel(self)

    def run(self) -> None:  # in the OS thread
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.exc = exc
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        self._link.post(self._call)

    def wait(self) -> Any:
        """Park until the call returns, then return its result or raise its exception. Killing or timing
        out the waiting green thread raises in it at once; the call goes on, and `wait()` may be called again."""
        if self.state == _CANCELLED:
            raise RuntimeError("the call was cancelled")
        call, link = self._call, self._link
        if not call.done:
            hub = link.hub
            if _getcurrent() is hub.greenlet:
                raise RuntimeError("wait() cannot be called from the hub itself")
            call.waiter = _getcurrent()
            link.waiting += 1
            if not link.waker_spawned:
                link.waker_spawned = True
                spawn_n(link.run_waker)
            try:
                while not call.done:
                    hub.park()
            except BaseException:
                if not call.done:
                    link.abandon(call)
                raise
        self.state = _DONE
        exc = self.exc
        if exc is not None:
            try:
                raise exc
            finally:
                del exc
        return self.result


_default = ThreadPool(_threads_from_env())


def set_num_threads(n: int) -> None:
    """Bound `execute`'s OS thread pool to `n` threads; calls already running finish first."""
    _default.resize(n)


def get_num_threads() -> int:
    """The current bound on OS threads used by `execute`."""
    return _default.size


class _Call:
    """Who waits for one call (None while nobody does) and whether the hub has heard that it ended."""

    __slots__ = ("waiter", "done")

    def __init__(self, waiter: greenlet.greenlet | None) -> None:
        self.waiter = waiter
        self.done = False


class _HubLink:
    """The channel from OS threads back to one hub: a deque of finished calls and a pipe to wake it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.finished: deque[_Call] = deque()  # appended by OS threads, drained by the waker
        self.read_fd, self.write_fd = os.pipe()
        self.read_owner = new_fd_owner()  # the waker's next wait on the pipe then costs no epoll_ctl
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.waiting = 0  # callers parked in execute (touched in the hub's thread only)
        self.waker_spawned = False
        self.waker: greenlet.greenlet | None = None  # set only while the waker runs or waits on the pipe

    def post(self, call: _Call) -> None:
        """Hand a finished call to the hub (called from an OS thread)."""
        self.finished.append(call)
        # BlockingIOError: the pipe is full, so a wake-up is already pending; another OSError: the link
        # was closed with its hub, and nobody waits for this result any more.
        with suppress(OSError):
            os.write(self.write_fd, b"\0")

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()

    def run_waker(self) -> None:
        """The waker green thread: while callers wait, sleep on the pipe and wake the ones whose call ended."""
        self.waker = _getcurrent()
        hub = self.hub
        try:
            while self.waiting:
                hub.wait_read(self.read_fd, owner=self.read_owner)
                with suppress(BlockingIOError):
                    while os.read(self.read_fd, 4096):
                        pass
                finished = self.finished
                while finished:
                    call = finished.popleft()
                    call.done = True
                    if call.waiter is not None:  # None: its caller was killed (it may wait again later)
                        self.waiting -= 1
                        hub.wake(call.waiter)
        finally:
            self.waker = None
            self.waker_spawned = False

    def abandon(self, call: _Call) -> None:
        """The caller of `call` stops waiting (killed or timed out)."""
        call.waiter = None
        self.waiting -= 1
        if not self.waiting and self.waker is not None:
            self.hub.wake(self.waker)  # it is parked on the pipe: let it see nobody waits and end


class Doorbell:
    """Wake-ups from OS threads to one green thread of the hub that made it, through a pipe (no polling).

    `ring()` from any thread, any number of times; `wait()` parks one green thread at a time until a ring
    since its last `wait` (rings in between count as one). For an OS thread that finishes work a green
    thread waits for, when `execute` (one OS thread per waiting call) does not fit."""

    def __init__(self) -> None:
        self.hub = get_hub()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._owner = new_fd_owner()

    def ring(self) -> None:
        """Wake the waiter, or the next `wait` (thread-safe; never blocks)."""
        with suppress(OSError):  # full: a ring is pending anyway; closed: nobody waits any more
            os.write(self.write_fd, b"\0")

    def wait(self, timeout: float | None = None) -> None:
        """Park until rung (TimeoutError after `timeout` seconds)."""
        self.hub.wait_read(self.read_fd, timeout, owner=self._owner)
        with suppress(BlockingIOError):
            while os.read(self.read_fd, 4096):
                pass

    def close(self) -> None:
        """Close the pipe (a green thread still waiting gets OSError)."""
        self.hub.notify_close(self.read_fd)
        for fd in (self.read_fd, self.write_fd):
            with suppress(OSError):
                os.close(fd)


_local = threading.local()


def _link() -> _HubLink:
    hub = get_hub()
    link = getattr(_local, "link", None)
    if link is None or link.hub is not hub:
        link = _local.link = _HubLink(hub)
    return link


def execute(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` on an OS thread and park until it returns (or raises) — for blocking calls."""
    return _default.execute(fn, *args, **kwargs)

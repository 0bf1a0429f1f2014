"""Run blocking callables on real OS threads while the calling green thread waits cooperatively.

`execute(fn, *args, **kwargs)` hands the call to a bounded pool of OS threads (`set_num_threads`, or the
environment variable POOL_CORE_THREADS, default 20) and parks the calling green thread; the hub keeps
running every other green thread meanwhile. The call's result is returned, or its exception re-raised,
in the caller.

How the hub hears about a finished call, without ever polling: each hub owns a non-blocking pipe and a
thread-safe deque. The OS thread appends the finished call to the deque and writes one byte to the pipe.
One *waker* green thread per hub waits on the pipe's read end with `wait_read`, drains it, and wakes
the callers whose calls are in the deque. The waker exists only while some green thread waits in
`execute`; its wait on the pipe is what keeps the hub from declaring a deadlock (LoopExit) meanwhile (the
pipe stays armed in the hub between waits, which the hub does not count).

Killing or timing out a green thread blocked in `execute` raises in it at once. The OS thread cannot be
interrupted: it finishes in the background and its result is dropped (a call still queued is cancelled).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

import greenlet

from .greenthread import spawn_n
from .hub import Hub, get_hub, new_fd_owner

__all__ = ["Doorbell", "execute", "get_num_threads", "set_num_threads"]

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


_lock = threading.Lock()
_num_threads = _threads_from_env()
_executor: ThreadPoolExecutor | None = None


def set_num_threads(n: int) -> None:
    """Bound the OS thread pool to `n` threads; calls already running or queued finish on the old pool."""
    global _num_threads, _executor
    if n < 1:
        raise ValueError("the thread pool needs at least one thread")
    with _lock:
        old, _executor, _num_threads = _executor, None, n
    if old is not None:
        old.shutdown(wait=False)


def get_num_threads() -> int:
    """The current bound on OS threads used by `execute`."""
    return _num_threads


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_num_threads, thread_name_prefix="pool_core.threads")
        return _executor


class _Call:
    """One `execute` call: who waits for it and what it produced (written by the OS thread)."""

    __slots__ = ("waiter", "done", "result", "exc")

    def __init__(self, waiter: greenlet.greenlet) -> None:
        self.waiter: greenlet.greenlet | None = waiter  # None once the caller gave up
        self.done = False
        self.result: Any = None
        self.exc: BaseException | None = None


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
                    if call.waiter is not None:  # None: its caller was killed; drop the result
                        call.done = True
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


def _run_in_os_thread(link: _HubLink, call: _Call, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    if call.waiter is None:  # abandoned while queued and not cancelled in time
        return
    try:
        call.result = fn(*args, **kwargs)
    except BaseException as exc:
        call.exc = exc
    link.post(call)


def execute(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` on an OS thread and park until it returns (or raises) — for blocking calls."""
    hub = get_hub()
    current = _getcurrent()
    if current is hub.greenlet:
        raise RuntimeError("execute() cannot be called from the hub itself")
    link = _link()
    call = _Call(current)
    future: Future = _get_executor().submit(_run_in_os_thread, link, call, fn, args, kwargs)
    link.waiting += 1
    if not link.waker_spawned:
        link.waker_spawned = True
        spawn_n(link.run_waker)
    try:
        while not call.done:
            hub.park()
    except BaseException:
        if not call.done:
            future.cancel()
            link.abandon(call)
        raise
    exc = call.exc
    if exc is not None:
        call.exc = None
        try:
            raise exc
        finally:
            del exc
    return call.result

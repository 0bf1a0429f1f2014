"""Green threads: `spawn`, `spawn_n`, `spawn_after`, `sleep`, `kill` and the `GreenThread` handle.

A `GreenThread` is a handle on one call, not a greenlet of its own: the call runs on a worker greenlet
that is parked and reused once the call ends, because creating a greenlet costs as much as ~50 switches.
`getcurrent()` returns the GreenThread whose call is running (or the bare greenlet outside any).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import greenlet

from .hub import WAKE, Hub, get_hub

__all__ = [
    "GreenThread",
    "GreenletExit",
    "getcurrent",
    "kill",
    "sleep",
    "spawn",
    "spawn_after",
    "spawn_n",
]

log = logging.getLogger("pool_core")
GreenletExit = greenlet.GreenletExit
_getcurrent = greenlet.getcurrent
_MAX_IDLE_WORKERS = 10_000
_NOT_STARTED, _RUNNING, _DONE = 0, 1, 2


class _Worker(greenlet.greenlet):
    """A reusable greenlet that runs one call after another; `job` is the call it runs now."""

    __slots__ = ("gp_pending", "job", "hub")


def _worker_main() -> None:
    worker = _getcurrent()
    hub = worker.hub
    idle = hub.idle_workers
    switch_to_hub = hub.greenlet.switch
    while True:
        job = worker.job
        if job.__class__ is tuple:
            func, args, kwargs = job
            try:
                _call(func, args, kwargs)
            except BaseException:
                log.exception("pool_core: unhandled exception in green thread %r", func)
        else:
            job._run()
        worker.job = None
        if len(idle) >= _MAX_IDLE_WORKERS:
            return
        idle.append(worker)
        while worker.job is None:
            with suppress(BaseException):  # a stray kill or timeout for a call that already ended
                switch_to_hub()


def _call(func: Callable[..., Any], args: tuple, kwargs: dict | None) -> Any:
    """`func(*args, **kwargs)`, with fixed-arity calls for the common cases: CPython runs those in the
    caller's C frame, so a parked green thread saves ~370 fewer bytes of C stack."""
    if kwargs:
        return func(*args, **kwargs)
    n = len(args)
    if n == 0:
        return func()
    if n == 1:
        return func(args[0])
    if n == 2:
        return func(args[0], args[1])
    return func(*args)


def _start(hub: Hub, job: GreenThread | tuple) -> None:
    """Hand `job` to an idle worker (or a new one) and make it runnable."""
    idle = hub.idle_workers
    if idle:
        worker = idle.pop()
    else:
        worker = _Worker(_worker_main, hub.greenlet)
        worker.hub = hub
        worker.gp_pending = None
    worker.job = job
    if job.__class__ is not tuple:
        job._worker = worker
    worker.gp_pending = WAKE
    hub.ready.append(worker)


class GreenThread:
    """The handle of a spawned call: wait for its result, link callbacks to its end, or kill it.

    `wait()` returns the call's result or raises its exception; a killed call raises GreenletExit (or the
    exception passed to `kill`). Links run in the green thread that ended, in the order they were added.
    """

    __slots__ = ("_func", "_args", "_kwargs", "_state", "_result", "_exc", "_waiters", "_links", "_worker")

    def __init__(self, func: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> None:
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._state = _NOT_STARTED
        self._result: Any = None
        self._exc: BaseException | None = None
        self._waiters: list | None = None
        self._links: list | None = None
        self._worker: _Worker | None = None

    def _run(self) -> None:
        """Run the call in the current worker and publish its outcome (called by the worker only)."""
        if self._state is not _NOT_STARTED:  # cancelled before it started
            return
        self._state = _RUNNING
        try:
            self._result = _call(self._func, self._args, self._kwargs)
        except BaseException as exc:
            self._exc = exc
            if not self._waiters and not isinstance(exc, GreenletExit):
                log.error("pool_core: green thread %r raised", self._func, exc_info=exc)
        self._finish()

    def _finish(self) -> None:
        self._state = _DONE
        self._func = self._args = self._kwargs = None
        self._worker = None
        waiters = self._waiters
        if waiters:
            self._waiters = None
            wake = get_hub().wake
            for g in waiters:
                wake(g)
        links = self._links
        if links:
            self._links = None
            for fn, args, kwargs in links:
                try:
                    fn(self, *args, **kwargs)
                except BaseException:
                    log.exception("pool_core: link %r of a green thread failed", fn)

    @property
    def dead(self) -> bool:
        """True once the call has ended (returned, raised, or was killed/cancelled)."""
        return self._state is _DONE

    def ready(self) -> bool:
        """Same as `dead`: the result is available."""
        return self._state is _DONE

    def wait(self) -> Any:
        """Park until the call ends; return its result or raise its exception."""
        if self._state is not _DONE:
            current = _getcurrent()
            if self._worker is current:
                raise RuntimeError("a green thread cannot wait for itself")
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(current)
            park = get_hub().park
            try:
                while self._state is not _DONE:
                    park()
            finally:
                if self._waiters and current in self._waiters:
                    self._waiters.remove(current)
        if self._exc is not None:
            raise self._exc
        return self._result

    def link(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call `func(self, *args, **kwargs)` when the call ends (at once if it already has)."""
        if self._state is _DONE:
            func(self, *args, **kwargs)
            return
        if self._links is None:
            self._links = []
        self._links.append((func, args, kwargs))

    def unlink(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Remove a link added with the same arguments; True if one was removed."""
        if self._links:
            try:
                self._links.remove((func, args, kwargs))
                return True
            except ValueError:
                pass
        return False

    def kill(self, *throw_args: Any) -> None:
        """End the call: if it has not started it never will; if it runs, raise GreenletExit (or
        `throw_args`) at its current park point and return once it has handled that."""
        if self._state is _DONE:
            return
        exc = _make_exception(throw_args)
        if self._state is _NOT_STARTED:
            self._cancel(exc)
            return
        worker = self._worker
        current = _getcurrent()
        if worker is current:
            raise exc
        hub = get_hub()
        hub.throw(worker, exc)
        if current is not hub.greenlet:
            hub.yield_now()

    def _kill_soon(self) -> None:
        """Ask a running call to end with GreenletExit at its next turn, without waiting for it."""
        if self._state is _RUNNING and self._worker is not _getcurrent():
            get_hub().throw(self._worker, GreenletExit())
        elif self._state is _NOT_STARTED:
            self._cancel(GreenletExit())

    def cancel(self, *throw_args: Any) -> None:
        """Kill the call only if it has not started yet; a running call is left alone."""
        if self._state is _NOT_STARTED:
            self._cancel(_make_exception(throw_args))

    def _cancel(self, exc: BaseException) -> None:
        self._exc = exc
        self._finish()

    def __repr__(self) -> str:
        state = ("not started", "running", "dead")[self._state]
        return f"<GreenThread {state} {self._func!r}>" if self._func else f"<GreenThread {state}>"


def _make_exception(throw_args: tuple) -> BaseException:
    if not throw_args:
        return GreenletExit()
    first = throw_args[0]
    if isinstance(first, BaseException):
        return first
    return first(*throw_args[1:2])


def getcurrent() -> GreenThread | greenlet.greenlet:
    """The GreenThread whose call is running now, or the bare greenlet outside of one."""
    g = _getcurrent()
    job = getattr(g, "job", None)
    return job if isinstance(job, GreenThread) else g


def spawn(func: Callable[..., Any], *args: Any, **kwargs: Any) -> GreenThread:
    """Start `func(*args, **kwargs)` in a new green thread at the hub's next turn; return its handle."""
    gt = GreenThread(func, args, kwargs)
    _start(get_hub(), gt)
    return gt


def spawn_n(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Like `spawn` but with no handle (a little cheaper); an exception it raises is logged."""
    _start(get_hub(), (func, args, kwargs))


def spawn_after(seconds: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> GreenThread:
    """Start `func` after `seconds`; killing or cancelling the handle before then stops it starting."""
    gt = GreenThread(func, args, kwargs)
    hub = get_hub()
    hub.call_later(seconds, _start_unless_cancelled, hub, gt)
    return gt


def _start_unless_cancelled(hub: Hub, gt: GreenThread) -> None:
    if gt._state is _NOT_STARTED:
        _start(hub, gt)


def sleep(seconds: float = 0) -> None:
    """Park the current green thread for `seconds`; `sleep(0)` lets every other runnable one run once."""
    hub = get_hub()
    if seconds <= 0:
        hub.yield_now()
        return
    timer = hub.call_later(seconds, hub.wake, _getcurrent())
    try:
        hub.park()
    finally:
        timer.cancel()


def kill(gt: GreenThread, *throw_args: Any) -> None:
    """Kill `gt` (see `GreenThread.kill`)."""
    gt.kill(*throw_args)

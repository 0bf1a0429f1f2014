"""`GreenPool`: at most `size` calls running at once, resizable at any time (eventlet's API).

The pool only bounds concurrency; it does not own results (see `pile` for that). Guarantees:
  * `spawn` parks while the pool is full — except from one of the pool's own green threads, where it
    runs the call inline instead of deadlocking. Parked spawners are woken FIFO, one per freed slot.
  * `resize(n)` works at any time: running calls continue; shrinking lets `free()` go negative until
    work drains; `resize(0)` pauses new starts; growing wakes parked spawners at once.
  * `waitall()` returns only when nothing runs and no spawner is parked or about to start, so work
    started by spawners that were blocked when it was called is waited for too.
  * As in eventlet: `size` is `int(size)` (TypeError only when that fails); `imap(None, ...)` and
    `starmap(None, ...)` yield the argument tuples; the imap iterator has `.next()`; `waitall()` from one of
    the pool's own green threads raises WaitallInPoolError, an AssertionError (eventlet's) and a RuntimeError.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from typing import Any

import greenlet

from .greenthread import GreenThread, _start, spawn
from .hub import get_hub
from .waitqueue import WaitQueue

__all__ = ["GreenPool", "WaitallInPoolError"]

_getcurrent = greenlet.getcurrent


def _check_size(size: Any) -> int:
    """`int(size)`, as eventlet takes it: TypeError when `int()` cannot convert it, ValueError when negative."""
    try:
        size = int(size)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"GreenPool size must be an int, got {size!r} ({exc})") from None
    if size < 0:
        raise ValueError(f"GreenPool size must be >= 0, got {size}")
    return size


class WaitallInPoolError(AssertionError, RuntimeError):
    """`waitall()` called from one of the pool's own green threads, where it would never return.

    Both classes, so eventlet's callers (AssertionError) and ours (RuntimeError) catch it."""


def _args_tuple(*args: Any) -> tuple:
    """The arguments themselves: what `imap(None, ...)` and `starmap(None, ...)` yield, as in eventlet."""
    return args


class _PooledThread(GreenThread):
    """A GreenThread that gives its pool slot back when its call ends."""

    __slots__ = ("_pool",)

    def _finish(self) -> None:
        super()._finish()
        self._pool._release(self)


class GreenPool:
    """A bound on concurrency: at most `size` green threads spawned through it run at once."""

    def __init__(self, size: int = 1000) -> None:
        self.size = _check_size(size)
        self._running: set[GreenThread] = set()
        self._spawners = WaitQueue()
        self._blocked = 0  # spawners parked, or woken and not yet started
        self._idle = WaitQueue()  # green threads parked in waitall()

    def __repr__(self) -> str:
        return f"<GreenPool size={self.size} running={len(self._running)} waiting={self._blocked}>"

    def running(self) -> int:
        """Calls running now."""
        return len(self._running)

    def free(self) -> int:
        """`size - running()`: negative after a shrink until enough calls end."""
        return self.size - len(self._running)

    def waiting(self) -> int:
        """Green threads parked in `spawn`/`spawn_n` waiting for a free slot."""
        return self._blocked

    def resize(self, new_size: int) -> None:
        """Change the bound now; growing starts parked spawners at once (see the module docstring)."""
        self.size = _check_size(new_size)
        for _ in range(min(self.free(), len(self._spawners))):
            self._spawners.wake_one()

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> GreenThread:
        """Run `func(*args, **kwargs)` in the pool, parking while it is full; return its GreenThread."""
        running = self._running
        if len(running) >= self.size or self._blocked:
            if len(running) >= self.size:
                current = _getcurrent()
                job = getattr(current, "job", None)  # a spawn_n job is an (unhashable) tuple: test the class
                if job.__class__ is _PooledThread and job in running:
                    gt = GreenThread(func, args, kwargs)
                    gt._worker = current
                    gt._run()
                    return gt
            self._wait_for_slot()
        gt = _PooledThread(func, args, kwargs)
        gt._pool = self
        running.add(gt)
        _start(get_hub(), gt)
        return gt

    def spawn_n(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Like `spawn` without returning the handle."""
        self.spawn(func, *args, **kwargs)

    def _in_own_call(self) -> bool:
        """True when the caller is one of this pool's running calls (a spawn_n job is a plain tuple)."""
        job = getattr(_getcurrent(), "job", None)
        return job.__class__ is _PooledThread and job in self._running

    def _wait_for_slot(self) -> None:
        self._blocked += 1
        try:
            while len(self._running) >= self.size:
                self._spawners.park()
        except BaseException:  # killed while parked: it will never start, so waitall() may be done
            self._blocked -= 1
            if not self._blocked and not self._running:
                self._idle.wake_all()
            raise
        self._blocked -= 1  # the caller starts its call before anyone else runs: no waitall() to wake

    def _release(self, gt: GreenThread) -> None:
        running = self._running
        running.discard(gt)
        if self._blocked:
            if len(running) < self.size:
                self._spawners.wake_one()
        elif not running:
            self._idle.wake_all()

    def waitall(self) -> None:
        """Park until every call spawned (or about to be spawned) through the pool has ended."""
        if self._in_own_call():
            raise WaitallInPoolError(
                "Calling waitall() from within one of the GreenPool's green threads would never return"
            )
        while self._running or self._blocked:
            self._idle.park()

    def imap(self, func: Callable[..., Any] | None, *iterables: Iterable[Any]) -> Iterator[Any]:
        """`map` through the pool: results in input order, lazily, stopping at the shortest iterable;
        with `func=None`, the argument tuples."""
        return _IMap(self, _args_tuple if func is None else func, zip(*iterables, strict=False))

    def starmap(self, func: Callable[..., Any] | None, iterable: Iterable[Iterable[Any]]) -> Iterator[Any]:
        """`itertools.starmap` through the pool: `func(*args)` for each tuple, results in input order;
        with `func=None`, each argument tuple (as a tuple)."""
        return _IMap(self, _args_tuple if func is None else func, iterable)


class _IMapState:
    """What the producer of an imap shares with its iterator. The producer holds only this, never the
    iterator, so dropping the iterator frees it (and its `__del__` stops the producer)."""

    __slots__ = ("pending", "results", "space", "finished", "error")

    def __init__(self) -> None:
        self.pending: deque[GreenThread] = deque()
        self.results = WaitQueue()  # the consumer, waiting for the next result
        self.space = WaitQueue()  # the producer, waiting for room in the window
        self.finished = False
        self.error: BaseException | None = None


def _produce(state: _IMapState, pool: GreenPool, func: Callable[..., Any], arg_tuples: Iterator[Any]) -> None:
    pending = state.pending
    try:
        for args in arg_tuples:
            while len(pending) >= max(pool.size, 1):
                state.space.park()
            pending.append(pool.spawn(func, *args))
            state.results.wake_one()
    except greenlet.GreenletExit:
        pass
    except BaseException as exc:  # the input iterable itself failed: raise it in the consumer
        state.error = exc
    finally:
        state.finished = True
        state.results.wake_one()


class _IMap:
    """The iterator of `imap`/`starmap`: a producer green thread spawns calls through the pool while at
    most `pool.size` results are outstanding (constant memory); iteration yields them in input order
    and re-raises a call's exception at its position. Dropping the iterator stops the producer (calls
    already spawned run to their end)."""

    __slots__ = ("_state", "_producer", "__weakref__")

    def __init__(self, pool: GreenPool, func: Callable[..., Any], arg_tuples: Iterable[Any]) -> None:
        self._state = state = _IMapState()
        self._producer = spawn(_produce, state, pool, func, iter(arg_tuples))

    def __iter__(self) -> _IMap:
        return self

    def __next__(self) -> Any:
        state = self._state
        pending = state.pending
        while not pending:
            if state.finished:
                if state.error is not None:
                    error, state.error = state.error, None
                    raise error
                raise StopIteration
            state.results.park()
        gt = pending.popleft()
        state.space.wake_one()
        return gt.wait()

    next = __next__  # eventlet's iterators have it (a Python 2 name)

    def close(self) -> None:
        """Stop spawning further calls (those already spawned run to their end)."""
        if not self._producer.dead:
            self._producer._kill_soon()

    def __del__(self) -> None:
        with suppress(Exception):  # e.g. at interpreter exit
            self.close()

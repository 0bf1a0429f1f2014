"""The worker's clock: one hub timer that watches requests for their client leaving and ends keep-alive waits.

Every `TICK` it gives a request still running after `WATCH_AFTER`, and found parked at two ticks running, a
watcher (`Connection.watch`): not one that a busy hub merely has yet to run again, or that waits a moment for
its store's commit (under load, ~every request at 512 connections outlived WATCH_AFTER that way, and a
watcher green thread each took ~10% of the hub). Every `IDLE_TICK` (every tick while draining) it ends the
keep-alive waits whose time is up. One timer for all connections costs less than two per request, and these
deadlines need no better precision.
"""

from __future__ import annotations

import math
import time
from typing import Any

import greenlet

import pool_core

from .connection import Connection

__all__ = ["Clock", "IdleWait", "KeepAliveExpired"]

#: A request still running after this many seconds gets a watcher that notices its client leaving.
WATCH_AFTER = 0.05
#: How often the clock runs, and how often it looks at keep-alive waits.
TICK = 0.025
IDLE_TICK = 0.25


class KeepAliveExpired(BaseException):
    """Thrown by the clock into a connection still waiting for its next request when its keep-alive time is
    up (or the worker drains): the wait ends and the connection closes."""


class IdleWait:
    """The keep-alive wait for a connection's next request (`GreenWorker.timeout_ctx`). It registers its
    deadline with the clock, which ends it with `KeepAliveExpired`; that ending is not an error."""

    __slots__ = ("_idle", "_deadline", "_greenlet")

    def __init__(self, idle: dict[greenlet.greenlet, float], deadline: float | None) -> None:
        self._idle = idle
        self._deadline = deadline
        self._greenlet = None

    def __enter__(self) -> IdleWait:
        if self._deadline is not None:
            self._greenlet = greenlet.getcurrent()
            self._idle[self._greenlet] = self._deadline
        return self

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        if self._greenlet is not None:
            self._idle.pop(self._greenlet, None)
        return typ is KeepAliveExpired


class Clock:
    """The requests not yet watched and the keep-alive waits of one worker, and the timer that serves them."""

    def __init__(self) -> None:
        self._idle: dict[greenlet.greenlet, float] = {}  # connections in the keep-alive wait: deadline
        self._busy: dict[Connection, tuple[float, Any]] = {}  # requests not yet watched: start, green thread
        self._parked: set[Connection] = set()  # of them, late ones found parked at the last tick
        self._next_idle_check = 0.0
        self._draining = False

    def start(self) -> None:
        """Arm the first tick (in the worker process, on its hub)."""
        pool_core.get_hub().call_later(TICK, self._tick)

    def wait(self, seconds: float | None) -> IdleWait:
        """A keep-alive wait that ends after `seconds` (None: never; 0: at the next tick)."""
        return IdleWait(self._idle, None if seconds is None else time.monotonic() + seconds)

    def request_started(self, sock: Connection) -> None:
        """`sock`'s request (the calling green thread) began: watch it if it is still running after `WATCH_AFTER`."""
        self._busy[sock] = (time.monotonic(), pool_core.getcurrent())

    def request_ended(self, sock: Connection) -> None:
        """`sock`'s request ended before its watcher started (harmless after)."""
        self._busy.pop(sock, None)
        self._parked.discard(sock)

    def drain(self) -> None:
        """End every keep-alive wait now, and from here on every wait at the next tick."""
        self._draining = True
        self._expire_idle(math.inf)

    def _tick(self) -> None:
        hub = pool_core.get_hub()
        hub.call_later(TICK, self._tick)
        now = time.monotonic()
        busy = self._busy
        if busy:
            late, parked = now - WATCH_AFTER, self._parked
            due = []
            for sock, (started, request) in busy.items():  # in the order the requests started
                if started > late:
                    break
                due.append((sock, request))
            for sock, request in due:
                if getattr(request, "gp_pending", None) is not None:  # woken: it runs on in this pass
                    parked.discard(sock)
                elif sock in parked:
                    parked.discard(sock)
                    sock.watch(busy.pop(sock)[1])
                else:
                    parked.add(sock)
        if self._idle and (self._draining or now >= self._next_idle_check):
            self._next_idle_check = now + IDLE_TICK
            self._expire_idle(now)

    def _expire_idle(self, now: float) -> None:
        """End the keep-alive waits whose deadline is `now` or earlier (a wait with a kill or another
        exception already on its way is left to it)."""
        hub = pool_core.get_hub()
        for g in [g for g, deadline in self._idle.items() if deadline <= now]:
            if hub.pending_exception(g) is None:
                del self._idle[g]
                hub.throw(g, KeepAliveExpired())

"""Worker lifecycle hooks: how the app learns that its worker is draining, and holds the exit for its work.

The contract, all of it:

* ``on_drain(callback)`` registers ``callback()`` (usable as a decorator). When the worker starts to drain
  (SIGTERM/SIGQUIT/SIGINT, ``max_requests`` reached, parent gone) it has already stopped accepting
  connections; then each callback runs in its own pool_core green thread. A callback may park (e.g.
  ``pool.waitall()``): the worker does not exit before every callback has returned and every open
  connection has ended — or until the grace period (gunicorn's ``graceful_timeout``) is over, when what is
  left is killed with ``GreenletExit`` raised at its park point (catch it to cancel what remains, without
  parking again). A callback registered while draining runs at once.
* ``draining()`` is True from the moment the drain starts (e.g. ``/readyz`` answers 503, submissions 503).
* ``deadline()`` is the ``time.monotonic()`` instant at which leftovers are killed (None before a drain).
* ``drain(grace)`` is called by the worker: the first call starts the drain; every call returns the
  GreenThreads of all callbacks started so far (so the worker also waits for late registrations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pool_core

__all__ = ["deadline", "drain", "draining", "on_drain"]

log = logging.getLogger("greenpool.lifecycle")

_callbacks: list[Callable[[], Any]] = []
_threads: list[pool_core.GreenThread] = []
_deadline: float | None = None


def on_drain(callback: Callable[[], Any]) -> Callable[[], Any]:
    """Run `callback()` in its own green thread when the worker starts draining; returns `callback`."""
    _callbacks.append(callback)
    if _deadline is not None:
        _threads.append(pool_core.spawn(_run, callback))
    return callback


def draining() -> bool:
    """True once the worker has started to drain."""
    return _deadline is not None


def deadline() -> float | None:
    """The `time.monotonic()` time at which the worker kills what is left, or None when not draining."""
    return _deadline


def drain(grace: float) -> list[pool_core.GreenThread]:
    """Start draining (idempotent): run every callback in a green thread; return all their handles."""
    global _deadline
    if _deadline is None:
        _deadline = time.monotonic() + grace
        _threads.extend(pool_core.spawn(_run, callback) for callback in _callbacks)
    return list(_threads)


def _run(callback: Callable[[], Any]) -> None:
    """Call one drain callback, logging (not raising) its failure."""
    try:
        callback()
    except pool_core.GreenletExit:
        log.warning("drain callback %r was still running at the end of the grace period", callback)
        raise
    except Exception:
        log.exception("drain callback %r failed", callback)

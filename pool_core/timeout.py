"""`Timeout`: raise an exception in the current green thread after a delay (eventlet's semantics).

A Timeout is both the exception and its own context manager. It starts when created. Nesting works
because each Timeout raises itself (or its own `exception`): an outer `with` never swallows an inner
timeout, and `with Timeout(s, False):` silences only its own expiry. `Timeout(None)` never fires.
Cancelling costs O(1), so the common case — the work ends first — is nearly free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import greenlet

from .hub import WAKE, Timer, get_hub

__all__ = ["Timeout", "with_timeout"]


class Timeout(BaseException):
    """Raise `exception` (default: this Timeout) in the creating green thread after `seconds`."""

    def __init__(self, seconds: float | None = None, exception: BaseException | bool | None = None) -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.exception = exception
        self.timer: Timer | None = None
        self.start()

    def start(self) -> Timeout:
        """Arm the timer (done by the constructor); an error if it is already armed."""
        if self.pending:
            raise AssertionError(f"{self!r} is already started; cancel() it first")
        if self.seconds is None:
            return self
        current = greenlet.getcurrent()
        hub = get_hub()
        if current is hub.greenlet:
            raise RuntimeError("a Timeout cannot be started in the hub")
        exc = self if self.exception is None or isinstance(self.exception, bool) else self.exception
        self.timer = hub.call_later(self.seconds, _expire, self, hub, current, getattr(current, "job", None), exc)
        return self

    @property
    def pending(self) -> bool:
        """True while armed and not yet fired or cancelled."""
        return self.timer is not None and self.timer.pending

    def cancel(self) -> None:
        """Disarm; harmless if it already fired or was cancelled."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def __enter__(self) -> Timeout:
        if not self.pending and self.timer is None:
            self.start()
        return self

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        self.cancel()
        return value is self and self.exception is False

    def __repr__(self) -> str:
        return f"<Timeout seconds={self.seconds} exception={self.exception!r} pending={self.pending}>"

    def __str__(self) -> str:
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None or isinstance(self.exception, bool):
            return f"{self.seconds} second{suffix}"
        return f"{self.seconds} second{suffix} ({self.exception})"

    @property
    def is_timeout(self) -> bool:
        return True


def _expire(timeout: Timeout, hub: Any, g: greenlet.greenlet, job: Any, exc: BaseException) -> None:
    # A worker greenlet moves on to other calls: only hit the call that armed this timeout.
    if g.dead or getattr(g, "job", None) is not job:
        return
    pending = getattr(g, "gp_pending", None)
    if pending is not None and pending is not WAKE:
        # Another exception is on its way (a kill, a nested timeout, a socket timeout): ours must neither
        # replace it nor be lost, so it is raised after it, at the next turn, unless the code leaves this
        # Timeout's block meanwhile (which cancels the new timer) — as if the two had fired one by one.
        timeout.timer = hub.call_later(0, _expire, timeout, hub, g, job, exc)
        return
    hub.throw(g, exc)


def with_timeout(seconds: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `func(*args, **kwargs)`, raising Timeout after `seconds`; with `timeout_value=V` return V."""
    has_value = "timeout_value" in kwargs
    timeout_value = kwargs.pop("timeout_value", None)
    timeout = Timeout(seconds)
    try:
        try:
            return func(*args, **kwargs)
        except Timeout as exc:
            if exc is timeout and has_value:
                return timeout_value
            raise
    finally:
        timeout.cancel()

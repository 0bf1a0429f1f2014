"""`Event`: a one-shot result that any number of green threads can wait for (eventlet's semantics)."""

from __future__ import annotations

from typing import Any

from .waitqueue import WaitQueue

__all__ = ["Event"]

_NOT_SENT = object()


class Event:
    """Delivers one value (or exception) from `send` to every `wait`er, past and future, until `reset`.

    Sending twice without a reset is an error. A waiter woken by a send receives that send's value even if
    the event is reset before the waiter runs.
    """

    __slots__ = ("_result", "_exc", "_sends", "_last", "_waiters")

    def __init__(self) -> None:
        self._result: Any = _NOT_SENT
        self._exc: tuple | None = None
        self._sends = 0
        self._last: tuple[Any, tuple | None] = (None, None)
        self._waiters = WaitQueue()

    def ready(self) -> bool:
        """True once sent (until reset)."""
        return self._result is not _NOT_SENT

    def has_exception(self) -> bool:
        """True if sent with an exception."""
        return self._result is not _NOT_SENT and self._exc is not None

    def has_result(self) -> bool:
        """True if sent with a plain value."""
        return self._result is not _NOT_SENT and self._exc is None

    def poll(self, notready: Any = None) -> Any:
        """The value if sent (raising a sent exception), else `notready`, without waiting."""
        if self._result is _NOT_SENT:
            return notready
        return self.wait()

    def send(self, result: Any = None, exc: BaseException | tuple | None = None) -> None:
        """Deliver `result` (or raise `exc` in waiters) to all waiters; wakes them at the hub's next turn."""
        if self._result is not _NOT_SENT:
            raise AssertionError("Trying to re-send() an already-triggered event.")
        if exc is not None and not isinstance(exc, tuple):
            exc = (exc,)
        self._result = result
        self._exc = exc
        self._sends += 1
        self._last = (result, exc)
        self._waiters.wake_all()

    def send_exception(self, *args: Any) -> None:
        """Send an exception: `send_exception(ExcType, value)` or `send_exception(exc_instance)`."""
        self.send(None, args)

    def wait(self, timeout: float | None = None) -> Any:
        """Park until sent and return the value (or raise the exception); None if `timeout` expires."""
        if self._result is _NOT_SENT:
            sends = self._sends
            while self._sends == sends:
                if not self._waiters.park(timeout):
                    return None
            result, exc = self._last
        else:
            result, exc = self._result, self._exc
        if exc is not None:
            first = exc[0]
            if isinstance(first, BaseException):
                raise first
            raise first(*exc[1:2])
        return result

    def reset(self) -> None:
        """Make the event sendable again; waiters already woken still get the previous value."""
        if self._result is _NOT_SENT:
            raise AssertionError("Trying to re-reset() a fresh event.")
        self._result = _NOT_SENT
        self._exc = None

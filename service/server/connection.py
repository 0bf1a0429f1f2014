"""An accepted plain-TCP connection: reads bounded by the deadline of the request phase they are in, sends
bounded by the client's progress, and a watcher that notices the client leaving while the app works.

A request's line and headers must arrive within `header_timeout` of the accept (first request) or of their
first byte (later ones), its body within `body_timeout` of the end of the headers, however slowly the bytes
keep coming (slowloris); a read past the deadline raises `SlowClient`. A send raises it once the client has
accepted no byte of the response for `send_timeout` (a client that pipelines requests and never reads its
answers, a stream nobody reads): the connection is then closed, which frees its slot and green thread.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pool_core
from pool_core.sockets import GreenSocket

__all__ = ["BODY", "HEADERS", "SEND", "ClientDisconnected", "Connection", "SlowClient"]

#: Connection phases whose reads are bounded by a deadline (`Connection.limit`).
HEADERS, BODY = "headers", "body"
#: What `SlowClient.phase` says when the client stopped reading the response.
SEND = "send"


class ClientDisconnected(pool_core.GreenletExit):
    """Raised in a request's green thread, wherever it is parked, when its client closed the connection (or
    reset it) while the app was still working on the response: `finally` blocks and the response
    iterator's `close()` run, and the connection is closed quietly. Catch it only to clean up."""


class SlowClient(BaseException):
    """Raised by a connection's read when its request's headers (or body) did not arrive in time, or by a
    send when the client accepted none of the response for too long (phase `SEND`); not an Exception, so
    that the app passes it through untouched to `GreenWorker.handle_error`."""

    def __init__(self, phase: str, seconds: float) -> None:
        if phase == SEND:
            super().__init__(f"the client accepted no byte of the response for {seconds:g} s")
        else:
            super().__init__(f"the request {phase} did not arrive within {seconds:g} s")
        self.phase = phase
        self.seconds = seconds


class Connection(GreenSocket):
    """An accepted plain-TCP connection that can watch for its client leaving while the app works, and whose
    reads are bounded by the deadline of the request phase it is in (headers, body) — see `limit`.

    The watcher is a green thread parked on the socket's readability; it stops at the connection's first
    read (so the app can still read the request body) and on data (a pipelined request: nothing to see)."""

    _watcher: pool_core.GreenThread | None = None
    _phase: str = ""  # "" idle: the first byte read starts the headers phase
    _deadline: float | None = None
    _seconds: float | None = None
    _header_timeout: float | None = None
    send_timeout: float | None = None  # seconds a send may wait for the client to accept a byte
    wrote = False  # something was sent since the current request began
    _hold_first = False
    _held: bytes | None = None
    _pushback = b""

    def limit(self, phase: str, seconds: float | None) -> None:
        """Enter `phase` (`HEADERS`, `BODY`, or "" idle): its reads must all be done within `seconds`."""
        self._phase = phase
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._seconds = seconds

    def idle(self, header_timeout: float | None) -> None:
        """Between requests: wait freely (the keep-alive wait bounds it); the first byte starts the headers."""
        self.limit("", None)
        self._header_timeout = header_timeout
        self.wrote = False

    def _bounded(self, read: Any, *args: Any) -> Any:
        """`read(*args)` (a GreenSocket read), raising SlowClient once the phase's deadline passes."""
        saved = self.gettimeout()
        self.settimeout(max(1e-6, self._deadline - time.monotonic()))  # type: ignore[operator]
        try:
            return read(*args)
        except TimeoutError:
            raise SlowClient(self._phase, self._seconds) from None
        finally:
            self.settimeout(saved)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """GreenSocket.sendall, noting that the response has begun. While a request is handled, its first
        write (gunicorn's status line and headers) is held and sent with the next one, so a response costs one
        send and one TCP segment, not two; `flush` sends a write still held when the response ends."""
        if self._hold_first and not self.wrote:
            self.wrote = True
            self._held = bytes(data)
            return
        self.wrote = True
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        self._send_all(data, flags)

    def _send_all(self, data: Any, flags: int = 0) -> None:
        """GreenSocket.sendall, raising SlowClient once the client has accepted no byte for `send_timeout`
        (each send may wait that long for room in the send buffer, however long the whole takes)."""
        seconds = self.send_timeout
        if seconds is None:
            super().sendall(data, flags)
            return
        sent = 0
        if data.__class__ is bytes:  # the usual case: the send buffer takes it all at once
            try:  # noqa: SIM105  (the hot path: no context manager)
                sent = self.fd.send(data, flags)
            except BlockingIOError:
                pass
            if sent == len(data):
                return
        saved = self.gettimeout()
        self.settimeout(seconds)
        try:
            with memoryview(data) as view, view.cast("B") as buf:
                total = len(buf)
                while sent < total:
                    sent += self.send(buf[sent:], flags)
        except TimeoutError:
            raise SlowClient(SEND, seconds) from None
        finally:
            self.settimeout(saved)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """GreenSocket.sendfile, after any held write (the headers must go first); by reads and bounded sends
        when sends have a deadline (sendfile(2) would wait on the client unbounded)."""
        self.flush()
        if self.send_timeout is not None:
            return self._sendfile_by_send(file, offset, count)
        return super().sendfile(file, offset, count)

    def hold_first_write(self) -> None:
        """Start a response: hold its first write until the second (see `sendall`)."""
        self._hold_first = True

    def flush(self) -> None:
        """Send the held write, if any, and stop holding."""
        self._hold_first = False
        if self._held is not None:
            held, self._held = self._held, None
            self._send_all(held)

    def watch(self, request: pool_core.GreenThread) -> None:
        """Start watching on behalf of `request` (the connection's green thread)."""
        if self._watcher is None:
            self._watcher = pool_core.spawn(self._watch, request)

    def unwatch(self) -> None:
        """Stop watching (harmless when not watching)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.dead:
            watcher.kill()

    def unread(self, data: bytes) -> None:
        """Push bytes back: the next reads return them before reading the socket again (the fast path hands a
        request it read to gunicorn's parser this way)."""
        self._pushback = data + self._pushback

    def _take_pushback(self, size: int) -> bytes:
        data, self._pushback = self._pushback[:size], self._pushback[size:]
        if self._phase == "" and self._header_timeout is not None:
            self.limit(HEADERS, self._header_timeout)
        return data

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """GreenSocket.recv, after stopping the watcher (one reader per socket may wait at a time), within
        the current phase's deadline."""
        if self._pushback:
            return self._take_pushback(bufsize)
        if self._watcher is not None:
            self.unwatch()
        if self._deadline is not None:
            return self._bounded(super().recv, bufsize, flags)
        data = super().recv(bufsize, flags)
        if data and self._phase == "" and self._header_timeout is not None:
            self.limit(HEADERS, self._header_timeout)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """GreenSocket.recv_into, after stopping the watcher, within the current phase's deadline."""
        if self._pushback:
            data = self._take_pushback(nbytes or len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if self._watcher is not None:
            self.unwatch()
        if self._deadline is not None:
            return self._bounded(super().recv_into, buffer, nbytes, flags)
        count = super().recv_into(buffer, nbytes, flags)
        if count and self._phase == "" and self._header_timeout is not None:
            self.limit(HEADERS, self._header_timeout)
        return count

    def _watch(self, request: pool_core.GreenThread) -> None:
        """Wait until the socket is readable; if that is the end of the stream (or a reset), kill `request`."""
        try:
            pool_core.get_hub().wait_read(self.fileno())
        except (OSError, ValueError, RuntimeError):  # closed under us, or the request itself waits to read
            return
        finally:
            if self._watcher is pool_core.getcurrent():
                self._watcher = None
        try:
            gone = self.fd.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone and not request.dead:
            request.kill(ClientDisconnected())

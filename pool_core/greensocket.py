"""`GreenSocket`: a stdlib-compatible socket whose blocking calls park the green thread, not the OS thread.

It wraps a real socket kept in non-blocking mode. Every operation first tries the system call; only when it
would block does the green thread park on the hub (`wait_read` / `wait_write`) and retry. The *green*
timeout (`settimeout`) bounds each whole operation and raises `TimeoutError` (`socket.timeout`);
`settimeout(0)` makes operations raise `BlockingIOError` instead of parking (eventlet's semantics).

Closing a socket first wakes every green thread parked on it with `OSError(EBADF)`, so a reader never
sleeps forever on a descriptor that was closed under it. One reader and one writer per socket may wait at
a time: a second concurrent reader (or writer) gets `RuntimeError` from the hub, never a silent hang.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .hub import get_hub, new_fd_owner

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    ssl = None  # type: ignore[assignment]

__all__ = ["GreenSocket"]

if ssl is not None:
    _SSLWantRead: type[BaseException] = ssl.SSLWantReadError
    _SSLWantWrite: type[BaseException] = ssl.SSLWantWriteError
    _WOULD_BLOCK: tuple[type[BaseException], ...] = (BlockingIOError, _SSLWantRead, _SSLWantWrite)
    _SSLSocket: type = ssl.SSLSocket
else:  # pragma: no cover

    class _SSLWantRead(Exception):  # type: ignore[no-redef]
        pass

    _SSLWantWrite = _SSLWantRead
    _WOULD_BLOCK = (BlockingIOError,)
    _SSLSocket = _SSLWantRead

_monotonic = time.monotonic
_CONNECT_PENDING = {errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, errno.EAGAIN}
_CONNECT_DONE = {0, errno.EISCONN}


def _timed_out() -> TimeoutError:
    return TimeoutError("timed out")  # socket.timeout is an alias of TimeoutError


class GreenSocket:
    """A socket whose blocking operations park the calling green thread; anything else is delegated.

    `GreenSocket(sock)` wraps an existing socket (its timeout becomes the green timeout, a non-blocking
    one counts as blocking — eventlet's rule); `GreenSocket(family, type, proto, fileno)` creates one.
    """

    def __init__(
        self,
        sock_or_family: socket.socket | GreenSocket | int = socket.AF_INET,
        type: int = socket.SOCK_STREAM,
        proto: int = 0,
        fileno: int | None = None,
    ) -> None:
        if isinstance(sock_or_family, GreenSocket):
            sock, timeout = sock_or_family._sock, sock_or_family._timeout
        elif isinstance(sock_or_family, socket.socket):
            sock = sock_or_family
            timeout = sock.gettimeout() or socket.getdefaulttimeout()
        else:
            sock = socket.socket(sock_or_family, type, proto, fileno)
            timeout = socket.getdefaulttimeout()
        sock.setblocking(False)
        self._sock = sock
        self._timeout: float | None = timeout
        self._io_refs = 0  # open makefile() objects: the fd is really closed when the last one closes
        self._closed = False
        self._fd_owner = new_fd_owner()  # re-parking on the fd then costs no epoll_ctl (see pool_core.hub)

    # -- delegation and introspection -------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name == "_sock":  # not yet set (failed __init__): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} fd={self.fileno()} timeout={self._timeout!r} {self._sock!r}>"

    def __enter__(self) -> GreenSocket:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def fileno(self) -> int:
        """The descriptor, or -1 once closed or detached."""
        return self._sock.fileno()

    @property
    def fd(self) -> socket.socket:
        """The underlying non-blocking socket (eventlet's name), for a call that must never park."""
        return self._sock

    # -- timeouts -----------------------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        """Set the green timeout: None waits forever, 0 never waits (BlockingIOError), >0 raises TimeoutError."""
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0.0:
                raise ValueError("Timeout value out of range")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        """The green timeout (the OS-level socket itself always stays non-blocking)."""
        return self._timeout

    @property
    def timeout(self) -> float | None:
        """Same as `gettimeout()`, as the stdlib socket attribute."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """`setblocking(True)` is `settimeout(None)`; `setblocking(False)` is `settimeout(0)`."""
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """False only when the green timeout is 0."""
        return self._timeout != 0.0

    # -- the one wait loop every operation goes through -----------------------------------------
    def _io(self, reading: bool, fn: Callable[..., Any], *args: Any) -> Any:
        """Call `fn(*args)` until it stops saying it would block, parking on the fd in between."""
        timeout = self._timeout
        deadline = None
        while True:
            try:
                return fn(*args)
            except _WOULD_BLOCK as exc:
                if timeout == 0.0:
                    raise
                if isinstance(exc, _SSLWantRead):
                    reading = True
                elif isinstance(exc, _SSLWantWrite):
                    reading = False
            if timeout is not None and deadline is None:
                deadline = _monotonic() + timeout  # the timeout bounds the whole operation
            self._park(reading, deadline)

    def _park(self, reading: bool, deadline: float | None) -> None:
        """Wait until the fd is ready, or raise TimeoutError once `deadline` (None: never) has passed."""
        wait = None
        if deadline is not None:
            wait = deadline - _monotonic()
            if wait <= 0.0:
                raise _timed_out()
        fd = self._sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if reading:  # the hub's own timeout exception is TimeoutError("timed out") too
            get_hub().wait_read(fd, wait, None, self._fd_owner)
        else:
            get_hub().wait_write(fd, wait, None, self._fd_owner)

    # -- receiving ----------------------------------------------------------------------------
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to `bufsize` bytes (b"" at end of stream), parking until some arrive."""
        return self._io(True, self._sock.recv, bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into `buffer` (up to `nbytes`, 0 meaning its size); returns the count."""
        return self._io(True, self._sock.recv_into, buffer, nbytes, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Receive a datagram (or stream bytes) and the sender's address."""
        return self._io(True, self._sock.recvfrom, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Like `recvfrom`, into `buffer`."""
        return self._io(True, self._sock.recvfrom_into, buffer, nbytes, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple:
        """The stdlib `recvmsg`, parking until data arrives."""
        return self._io(True, self._sock.recvmsg, bufsize, ancbufsize, flags)

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> tuple:
        """The stdlib `recvmsg_into`, parking until data arrives."""
        return self._io(True, self._sock.recvmsg_into, buffers, ancbufsize, flags)

    # -- sending ------------------------------------------------------------------------------
    def send(self, data: Any, flags: int = 0) -> int:
        """Send some of `data`, parking until the socket can take at least one byte; returns the count."""
        return self._io(False, self._sock.send, data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of `data`, parking whenever the send buffer is full; the timeout bounds the whole call."""
        timeout = self._timeout
        send = self._sock.send
        sent = 0
        if data.__class__ is bytes:  # the usual case: one send takes it all, no memoryview needed
            try:
                sent = send(data, flags)
            except _WOULD_BLOCK:
                if timeout == 0.0:
                    raise
            if sent == len(data):
                return
        deadline = None if not timeout else _monotonic() + timeout
        with memoryview(data) as view, view.cast("B") as buf:
            total = len(buf)
            while sent < total:
                try:
                    sent += send(buf[sent:], flags)
                    continue
                except _WOULD_BLOCK as exc:
                    if timeout == 0.0:
                        raise
                    reading = isinstance(exc, _SSLWantRead)
                self._park(reading, deadline)

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        """Send a datagram: `sendto(data, address)` or `sendto(data, flags, address)`."""
        if address is None:
            return self._io(False, self._sock.sendto, data, flags_or_address)
        return self._io(False, self._sock.sendto, data, flags_or_address, address)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """The stdlib `sendmsg`, parking while the socket cannot take data."""
        args = (buffers, ancdata, flags) if address is None else (buffers, ancdata, flags, address)
        return self._io(False, self._sock.sendmsg, *args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a binary file (os.sendfile when possible, else read + sendall), parking as needed."""
        try:
            fileno = file.fileno()
            size = os.fstat(fileno).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):
            size = 0
        if not size or isinstance(self._sock, _SSLSocket) or not hasattr(os, "sendfile"):
            return self._sendfile_by_send(file, offset, count)
        blocksize = min(count or size, 1 << 30)
        sockno, total, deadline = self._sock.fileno(), 0, None
        try:
            while not count or total < count:
                try:
                    sent = os.sendfile(sockno, fileno, offset, min(blocksize, count - total) if count else blocksize)
                except BlockingIOError:
                    if self._timeout == 0.0:
                        raise
                    if self._timeout is not None and deadline is None:
                        deadline = _monotonic() + self._timeout
                    self._park(False, deadline)
                    continue
                except OSError:
                    if total == 0:  # this kind of file cannot be sent with sendfile(2)
                        return self._sendfile_by_send(file, offset, count)
                    raise
                if sent == 0:
                    break  # end of file
                offset += sent
                total += sent
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset)

    def _sendfile_by_send(self, file: Any, offset: int, count: int | None) -> int:
        if offset:
            file.seek(offset)
        total = 0
        try:
            while not count or total < count:
                data = file.read(min(65536, count - total) if count else 65536)
                if not data:
                    break
                self.sendall(data)
                total += len(data)
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    # -- connections --------------------------------------------------------------------------
    def accept(self) -> tuple[GreenSocket, Any]:
        """Park until a connection arrives; return it as a GreenSocket (default timeout) and its address."""
        conn, addr = self._io(True, self._sock.accept)
        return self._wrap_accepted(conn), addr

    def _wrap_accepted(self, conn: socket.socket) -> GreenSocket:
        child = GreenSocket(conn)
        child._timeout = socket.getdefaulttimeout()
        return child

    def connect(self, address: Any) -> None:
        """Connect without blocking the hub: start it, park until writable, then check SO_ERROR."""
        sock = self._sock
        timeout = self._timeout
        deadline = None if not timeout else _monotonic() + timeout
        while True:
            err = sock.connect_ex(address)
            if err in _CONNECT_DONE:
                return
            if err not in _CONNECT_PENDING:
                raise OSError(err, os.strerror(err))
            if timeout == 0.0:
                raise BlockingIOError(err, os.strerror(err))
            self._park(False, deadline)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))

    def connect_ex(self, address: Any) -> int:
        """Like `connect` but return an errno (0 on success, ETIMEDOUT on timeout) instead of raising."""
        try:
            self.connect(address)
        except TimeoutError:
            return errno.ETIMEDOUT
        except OSError as exc:
            if exc.errno:
                return exc.errno
            raise
        return 0

    def shutdown(self, how: int) -> None:
        """Shut down one or both halves; a parked reader then sees end of stream."""
        self._sock.shutdown(how)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close; green threads parked on the socket are woken with OSError first.

        While `makefile()` objects are open the descriptor stays open (stdlib semantics) and is closed
        with the last of them.
        """
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        fd = self._sock.fileno()
        if fd >= 0:
            get_hub().notify_close(fd)
        self._sock.close()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._real_close()

    def detach(self) -> int:
        """Give up the descriptor without closing it; returns it (this object is then closed)."""
        self._closed = True
        return self._sock.detach()

    def dup(self) -> GreenSocket:
        """A new GreenSocket on a duplicate of the descriptor, with the same green timeout."""
        twin = GreenSocket(self._sock.dup())
        twin._timeout = self._timeout
        return twin

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """A file object whose reads and writes go through this green socket (the stdlib's recipe)."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        raw = socket.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer: Any = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, io.text_encoding(encoding), errors, newline)
        text.mode = mode
        return text

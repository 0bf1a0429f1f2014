"""`wsgi.input` of the HTTP/1.1 fast path: a request body of known length, read from the connection."""

from __future__ import annotations

from typing import Any

from .request_body import BodyTruncated

__all__ = ["NO_BODY", "RECV", "Body"]

#: The most the fast path asks of one recv.
RECV = 65536


class Body:
    """`wsgi.input` for a request with a Content-Length: the bytes that came with the head, then the socket.

    Reads block until they have what was asked for (or the body ends), as gunicorn's body reader does; one
    that finds the connection ended before the body did raises `BodyTruncated`."""

    __slots__ = ("_sock", "_buf", "_left", "truncated")

    def __init__(self, sock: Any, buf: bytes, left: int) -> None:
        self._sock = sock
        self._buf = buf  # bytes of the body already read, not yet returned
        self._left = left  # bytes of the body still on the socket
        self.truncated = False  # the client closed before sending the whole body

    def _fill(self, want: int) -> bool:
        """Read more of the body from the socket into the buffer; False at the end of the body."""
        if self._left <= 0:
            return False
        data = self._sock.recv(min(RECV, max(want, 8192), self._left))
        if not data:
            self.truncated = True
            missing, self._left = self._left, 0
            raise BodyTruncated(missing)
        self._left -= len(data)
        self._buf += data
        return True

    def read(self, size: int | None = None) -> bytes:
        """Up to `size` bytes (all that is left when None or negative)."""
        if size is None or size < 0:
            size = len(self._buf) + self._left
        while len(self._buf) < size and self._fill(size - len(self._buf)):
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: int | None = None) -> bytes:
        """One line, with its newline (at most `size` bytes)."""
        limit = len(self._buf) + self._left if size is None or size < 0 else size
        while True:
            end = self._buf.find(b"\n", 0, limit)
            if end >= 0:
                return self.read(end + 1)
            if len(self._buf) >= limit or not self._fill(limit - len(self._buf)):
                return self.read(limit)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """The remaining lines (stopping once `hint` bytes were read, if given)."""
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Body:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def discard(self) -> bool:
        """Read and drop what the app left of the body; False if the client closed before it ended."""
        self._buf = b""
        try:
            while self._fill(RECV):
                self._buf = b""
        except BodyTruncated:
            return False
        return not self.truncated


NO_BODY = Body(None, b"", 0)

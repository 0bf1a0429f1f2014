"""Guards on gunicorn's request body readers (the path for requests the fast path hands over).

A body that turns out malformed (a bad chunk size or extension, a missing chunk terminator, a bad trailer)
or cut short makes its reader raise: the app answers 400, and the request is marked `must_close`, so the
response says `Connection: close` and the connection ends (where the next request would start is unknown).
Two holes in gunicorn's readers are closed: a Content-Length body cut short by the client's EOF is returned
short rather than failing, and a chunk-size line ended by a bare LF is waited on forever (RFC 9112 §7.1 ends
it with CRLF).
"""

from __future__ import annotations

from typing import Any

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.errors import InvalidChunkSize

__all__ = ["BodyTruncated", "guard_body"]


class BodyTruncated(ValueError):
    """The client ended the connection before the whole body its Content-Length announced had arrived."""

    def __init__(self, missing: int) -> None:
        super().__init__(f"the connection ended {missing} byte(s) before the end of the body")


class _StrictChunkedReader(ChunkedReader):
    """gunicorn's chunked reader, refusing a bare LF in a chunk-size line at once instead of waiting for
    the CRLF that would end the line."""

    def read_into(self, unreader: Any, buf: bytearray) -> None:
        """Read more of a chunk-size line (or the trailer section) into `buf`: gunicorn calls this only
        while `buf` holds no complete line, so any LF in it is a bare one."""
        if buf.count(b"\n") != buf.count(b"\r\n"):
            raise InvalidChunkSize(b"bare LF as line terminator")
        super().read_into(unreader, buf)


class _GuardedReader:
    """A body reader whose failure marks the request `must_close`; a Content-Length body cut short raises
    `BodyTruncated`."""

    __slots__ = ("_req", "_reader", "_left")

    def __init__(self, req: Any, reader: Any) -> None:
        self._req = req
        self._reader = reader
        self._left = reader.length if isinstance(reader, LengthReader) else None

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body (b"" at its end)."""
        try:
            data = self._reader.read(size)
            if self._left is not None:
                want = min(size, self._left)
                self._left -= len(data)
                if len(data) < want:
                    raise BodyTruncated(self._left)
        except Exception:
            self._req.must_close = True
            raise
        return data


def guard_body(req: Any) -> None:
    """Put the guards on `req`'s body reader (before anything has read it)."""
    body = req.body
    if body is None:
        return
    reader = body.reader
    if type(reader) is ChunkedReader:
        reader = _StrictChunkedReader(req, req.unreader)
    body.reader = _GuardedReader(req, reader)

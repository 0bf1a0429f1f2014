"""One response of the HTTP/1.1 fast path: WSGI `start_response` and `write`, framing, and the head sent with
the first body bytes, by gunicorn's `Response` rules."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any

from gunicorn import SERVER, util
from gunicorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName
from gunicorn.http.message import TOKEN_RE
from gunicorn.http.wsgi import HEADER_VALUE_RE, STATUS_RE, FileWrapper

__all__ = ["Exchange"]

log = logging.getLogger("gunicorn.error")

_HOP_BY_HOP = util.hop_headers


class _Date:
    """The `Date` header value, formatted once per second rather than once per response."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        """The current time as an HTTP date."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True)
        return self._value


_date = _Date()


class Exchange:
    """One response: WSGI `start_response` and `write`, framing (Content-Length or chunked) and the head,
    which is sent together with the first body bytes. The rules are gunicorn's `Response` ones."""

    __slots__ = (
        "sock", "head_request", "must_close", "status", "code", "lines", "length", "sent", "chunked",
        "head_sent", "omits_body", "upgrade", "warned",
    )  # fmt: skip

    def __init__(self, sock: Any, head_request: bool, must_close: bool) -> None:
        self.sock = sock
        self.head_request = head_request
        self.must_close = must_close
        self.status: str | None = None
        self.code: int | None = None
        self.lines: list[str] = []
        self.length: int | None = None
        self.sent = 0
        self.chunked = False
        self.head_sent = False
        self.omits_body = False
        self.upgrade = False
        self.warned = False

    def start_response(self, status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None) -> Callable:
        """WSGI start_response: check and keep the status and headers (sent with the first body bytes)."""
        if exc_info:
            try:
                if self.status is not None and self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("Response headers already set!")
        if not isinstance(status, str):
            raise TypeError(f"{status!r} is not a string")
        if not STATUS_RE.fullmatch(status):
            raise ValueError(f"Invalid status {status!r}")
        self.status = status
        code = self.code = int(status[:3])
        lines: list[str] = []
        length = None
        upgrade = False
        for name, value in headers:
            if not isinstance(name, str):
                raise TypeError(f"{name!r} is not a string")
            if not TOKEN_RE.fullmatch(name):
                raise InvalidResponseHeaderName(repr(name))
            if not isinstance(value, str):
                raise TypeError(f"{value!r} is not a string")
            if not HEADER_VALUE_RE.fullmatch(value):
                raise InvalidResponseHeader(repr(name))
            value = value.strip(" \t")
            lname = name.lower()
            if lname == "content-length":
                length = int(value)
            elif lname in _HOP_BY_HOP:
                if lname == "connection" and value.lower() == "upgrade":
                    upgrade = True
                elif lname == "upgrade" and value.lower() == "websocket":
                    lines.append(f"{name}: {value}\r\n")
                continue
            lines.append(f"{name}: {value}\r\n")
        omits = self.omits_body = self.head_request or code in (204, 304) or 100 <= code < 200
        if omits and (code == 204 or 100 <= code < 200):
            if length is not None:
                lines = [line for line in lines if not line.lower().startswith("content-length:")]
            length = None
        self.lines = lines
        self.length = length
        self.upgrade = upgrade
        self.chunked = length is None and not omits
        return self.write

    def should_close(self) -> bool:
        """Whether the connection must close after this response (gunicorn's rule)."""
        if self.must_close:
            return True
        if self.length is not None or self.chunked or self.head_request:
            return False
        return not (self.code < 200 or self.code in (204, 304))  # type: ignore[operator]

    def _head(self) -> bytes:
        connection = "upgrade" if self.upgrade else ("close" if self.should_close() else "keep-alive")
        chunked = "Transfer-Encoding: chunked\r\n" if self.chunked else ""
        self.head_sent = True
        return (
            f"HTTP/1.1 {self.status}\r\nServer: {SERVER}\r\nDate: {_date.now()}\r\nConnection: {connection}\r\n"
            f"{chunked}{''.join(self.lines)}\r\n"
        ).encode("latin-1")

    def write(self, data: bytes) -> None:
        """Send body bytes (with the head first, in the same send), framed as the headers say."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, bytes):
            raise TypeError(f"{data!r} is not a byte")
        if self.omits_body:
            if data and not self.warned:
                self.warned = True
                log.warning("WSGI app sent body bytes on a no-body response (status=%s); dropping per RFC 9110.",
                            self.code)  # fmt: skip
            data = b""
        elif self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room] if room > 0 else b""
            self.sent += len(data)
        elif data:  # chunked
            self.sent += len(data)
            data = b"%X\r\n%b\r\n" % (len(data), data)
        if not self.head_sent:
            self.sock.sendall(self._head() + data)
        elif data:
            self.sock.sendall(data)

    def finish(self) -> None:
        """End the response: the head if nothing was sent yet, the last chunk of a chunked body."""
        if self.status is None:
            raise AssertionError("the WSGI app returned without calling start_response()")
        end = b"0\r\n\r\n" if self.chunked else b""
        if not self.head_sent:
            self.sock.sendall(self._head() + end)
        elif end:
            self.sock.sendall(end)
        if self.length is not None and self.sent < self.length and not self.omits_body:
            self.must_close = True  # the body is shorter than its Content-Length: the framing is lost

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a `wsgi.file_wrapper` response with sendfile(2), as gunicorn does; False if it has no file
        descriptor or position (then it is iterated instead)."""
        filelike = wrapper.filelike
        if self.status is None:
            return False
        try:
            fileno = filelike.fileno()
            offset = os.lseek(fileno, 0, os.SEEK_CUR)
            count = os.fstat(fileno).st_size - offset if self.length is None else self.length
        except (AttributeError, OSError, ValueError):
            return False
        if self.omits_body or count <= 0:
            self.finish()
            return True
        head = self._head() + (b"%X\r\n" % count if self.chunked else b"")
        self.sock.sendall(head)
        self.sock.sendfile(filelike, offset, count)
        self.sent = count
        if self.chunked:
            self.sock.sendall(b"\r\n0\r\n\r\n")
        os.lseek(fileno, offset, os.SEEK_SET)
        return True

    def early_hints(self, headers: Iterable[tuple[str, str]]) -> None:
        """`wsgi.early_hints`: send a 103 Early Hints response before the final one."""
        if self.head_sent:
            return
        lines = []
        for name, value in headers:
            name = name.decode("latin-1") if isinstance(name, bytes) else name
            value = value.decode("latin-1") if isinstance(value, bytes) else value
            if not TOKEN_RE.fullmatch(name) or not HEADER_VALUE_RE.fullmatch(value):
                raise InvalidResponseHeader(repr(name))
            value = value.strip(" \t")
            lines.append(f"{name}: {value}\r\n")
        self.sock.sendall(("HTTP/1.1 103 Early Hints\r\n" + "".join(lines) + "\r\n").encode("latin-1"))

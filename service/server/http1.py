"""The HTTP/1.1 fast path of `GreenWorker`: plain requests parsed by gunicorn's C parser, answered lean.

gunicorn's per-request Python (its `Request`, header policy, `wsgi.create`, `Response`, access-log atoms) cost
about 50 µs a request, more than the rest of a `GET /v1/pool` together. For the requests that make up nearly all of our
traffic this module does the same work with a few dict operations: `gunicorn_h1c.parse_request_fast` (the C
parser gunicorn itself uses, with gunicorn's limits) parses the head, the environ is built from a per-connection
template, and the status line and headers go out with the first body bytes in one `send`.

Anything unusual is *not* handled here: the bytes read so far are pushed back into the connection and gunicorn's
own request loop takes the connection over, so its rules and error answers apply unchanged. Unusual means: a
parse error or limit hit, HTTP/1.0, a method outside the common seven, a request target that is not a plain
origin-form path, `Transfer-Encoding`, `Expect`, `Upgrade`/`HTTP2-Settings`, header names with `_`, the
configured secure-scheme and forwarder headers, or a repeated singleton field. A worker whose configuration
needs gunicorn's per-request machinery (TLS, proxy protocol, h2c, an access log that is written, request hooks,
`SCRIPT_NAME`, debug logging) does not use the fast path at all (`FastPath.refusal`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any

import gunicorn_h1c
from gunicorn import SERVER, SERVER_SOFTWARE, util
from gunicorn.config import PostRequest, PreRequest
from gunicorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName
from gunicorn.http.message import (
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    RFC9110_5_3_SINGLETON_FIELDS,
    RFC9112_TARGET_INVALID,
    TOKEN_RE,
)
from gunicorn.http.wsgi import HEADER_VALUE_RE, STATUS_RE, FileWrapper, WSGIErrorsWrapper

__all__ = ["FastPath"]

log = logging.getLogger("gunicorn.error")

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
#: Request fields that need gunicorn's header policy: with one of these, gunicorn serves the request.
_POLICY_FIELDS = frozenset(("TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "TE"))
_HOP_BY_HOP = util.hop_headers
_RECV = 65536
_MAX_HEADER_CACHE = 512


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


class _Body:
    """`wsgi.input` for a request with a Content-Length: the bytes that came with the head, then the socket.

    Reads block until they have what was asked for (or the body ends), as gunicorn's body reader does."""

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
        data = self._sock.recv(min(_RECV, max(want, 8192), self._left))
        if not data:
            self.truncated = True
            self._left = 0
            return False
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

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def discard(self) -> bool:
        """Read and drop what the app left of the body; False if the client closed before it ended."""
        self._buf = b""
        while self._fill(_RECV):
            self._buf = b""
        return not self.truncated


_NO_BODY = _Body(None, b"", 0)


class _Exchange:
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


class FastPath:
    """Serves a connection's plain requests (see the module docstring); built once per worker."""

    def __init__(self, cfg: Any, app: Callable) -> None:
        self.app = app
        line = cfg.limit_request_line
        line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else (1024 * 1024 if line == 0 else line)
        fields = cfg.limit_request_fields
        fields = MAX_HEADERS if fields <= 0 or fields > MAX_HEADERS else fields
        field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190
        self.limits = {
            "limit_request_line": line,
            "limit_request_fields": fields,
            "limit_request_field_size": field_size,
            "permit_unconventional_http_method": bool(cfg.permit_unconventional_http_method),
            "permit_unconventional_http_version": bool(cfg.permit_unconventional_http_version),
        }
        self.max_head = fields * (field_size + 2) + 4 + line
        policy = {name.upper() for name in cfg.secure_scheme_headers} | {n.upper() for n in cfg.forwarder_headers}
        self.policy_fields = _POLICY_FIELDS | policy
        self.keys: dict[bytes, tuple[str, bool] | None] = {}
        self.base = {
            "wsgi.errors": WSGIErrorsWrapper(cfg),
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": cfg.workers > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "wsgi.url_scheme": "http",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SCRIPT_NAME": "",
        }

    @staticmethod
    def refusal(cfg: Any, logger: Any) -> str | None:
        """Why this worker's configuration needs gunicorn's per-request machinery, or None if it does not."""
        if cfg.is_ssl:
            return "TLS"
        if cfg.proxy_protocol != "off":
            return "proxy protocol"
        if cfg.http2_cleartext != "off" or "h1" not in (cfg.http_protocols or ["h1"]):
            return "HTTP/2 cleartext"
        if getattr(cfg, "protocol", "http") != "http":
            return f"protocol {cfg.protocol}"
        if os.environ.get("SCRIPT_NAME"):
            return "SCRIPT_NAME"
        if getattr(cfg.pre_request, "__code__", None) is not PreRequest.pre_request.__code__:
            return "a pre_request hook"
        if getattr(cfg.post_request, "__code__", None) is not PostRequest.post_request.__code__:
            return "a post_request hook"
        if logger.access_log_enabled and logging.getLogger("gunicorn.access").isEnabledFor(logging.INFO):
            return "the access log"
        if logging.getLogger("gunicorn.error").isEnabledFor(logging.DEBUG):
            return "debug logging"
        return None

    def _key(self, name: bytes) -> tuple[str, bool] | None:
        """The environ key of a request field and whether it is a singleton; None if gunicorn must serve it."""
        upper = name.decode("latin-1").upper()
        if "_" in upper or upper in self.policy_fields:
            return None
        if upper == "CONTENT-TYPE":
            return "CONTENT_TYPE", True
        if upper == "CONTENT-LENGTH":
            return "CONTENT_LENGTH", True
        return "HTTP_" + upper.replace("-", "_"), upper in RFC9110_5_3_SINGLETON_FIELDS

    def environ(self, conn_base: dict, parsed: Any, sock: Any) -> tuple[dict, bool] | None:
        """The WSGI environ of a parsed head (without wsgi.input) and whether the request asks to close;
        None when the request is not a plain one."""
        method = _METHODS.get(parsed.method)
        if method is None or parsed.minor_version != 1:
            return None
        target = parsed.path
        if target[:1] != b"/" or target[:2] == b"//" or not target.isascii():
            return None
        uri = target.decode("ascii")
        if RFC9112_TARGET_INVALID.search(uri):
            return None
        env = conn_base.copy()
        keys = self.keys
        close = False
        for name, value in parsed.headers:
            entry = keys.get(name)
            if entry is None:
                if name in keys:
                    return None
                entry = self._key(name)
                if len(keys) < _MAX_HEADER_CACHE:
                    keys[name] = entry
                if entry is None:
                    return None
            key, singleton = entry
            text = value.decode("latin-1")
            if key in env:
                if singleton:
                    return None
                env[key] = env[key] + "," + text
            else:
                env[key] = text
                if key == "HTTP_CONNECTION":
                    close = text.lower().strip(" \t") == "close"
        path, _, query = uri.partition("#")[0].partition("?")
        env["REQUEST_METHOD"] = method
        env["RAW_URI"] = uri
        env["QUERY_STRING"] = query
        env["PATH_INFO"] = util.unquote_to_wsgi_str(path) if "%" in path else path
        env["gunicorn.socket"] = sock
        return env, close

    def connection_base(self, sock: Any, addr: Any, server: Any) -> dict | None:
        """The environ entries shared by a connection's requests; None if not a TCP connection."""
        if not isinstance(addr, tuple) or not isinstance(server, tuple):
            return None
        base = self.base.copy()
        base["REMOTE_ADDR"] = addr[0]
        base["REMOTE_PORT"] = str(addr[1])
        base["SERVER_NAME"] = server[0]
        base["SERVER_PORT"] = str(server[1])
        return base

    def _head(self, sock: Any, buf: bytes) -> tuple[Any, bytes]:
        """Read until `buf` holds a whole request head: (parsed head, buffer); (None, bytes read) when gunicorn
        must serve it; (None, b"") when the client closed."""
        parse, limits = gunicorn_h1c.parse_request_fast, self.limits
        while True:
            if buf:
                try:
                    return parse(buf, **limits), buf
                except gunicorn_h1c.IncompleteError:
                    if len(buf) > self.max_head:
                        return None, buf
                except Exception:  # a parse error or a limit: gunicorn answers it the way it always does
                    return None, buf
            more = sock.recv(_RECV)
            if not more:
                return None, b""
            buf += more

    def serve(self, worker: Any, sock: Any, addr: Any, server: Any) -> bytes | None:
        """Serve the connection's plain requests. Returns None when the connection is done (the caller closes
        it), or the bytes read of a request gunicorn must serve (the caller pushes them back and hands over).

        `worker` provides `timeout_ctx()` (the keep-alive wait), `count_request()` (False once the connection
        must close: max_requests reached, draining, keep-alive off), `request_started(sock)` and
        `request_ended(sock)` (deadlines, disconnect watching), and `fair_turn()`, called between
        requests so that a connection whose next request is already there cannot keep the hub to itself."""
        conn_base = self.connection_base(sock, addr, server)
        if conn_base is None:
            return b""
        app = self.app
        buf = b""
        while True:
            if buf:  # a pipelined request is already here: no keep-alive wait
                parsed, buf = self._head(sock, buf)
            else:
                parsed = None
                with worker.timeout_ctx():
                    parsed, buf = self._head(sock, buf)
            if parsed is None:
                return buf or None
            made = self.environ(conn_base, parsed, sock)
            if made is None:
                return buf
            env, close = made
            rest = buf[parsed.consumed :]
            length = parsed.content_length
            if length > 0:
                body = _Body(sock, rest[:length], length - min(len(rest), length))
                buf = rest[length:]
            else:
                body, buf = _NO_BODY, rest
            env["wsgi.input"] = body
            keep = worker.count_request()
            exchange = _Exchange(sock, env["REQUEST_METHOD"] == "HEAD", close or not keep)
            env["wsgi.early_hints"] = exchange.early_hints
            worker.request_started(sock)
            try:
                result = app(env, exchange.start_response)
                try:
                    if not (isinstance(result, FileWrapper) and exchange.send_file(result)):
                        for item in result:
                            exchange.write(item)
                        exchange.finish()
                finally:
                    if hasattr(result, "close"):
                        result.close()
                if body is not _NO_BODY and not body.discard():
                    return None
            except OSError:
                raise
            except (Exception, SystemExit):
                if exchange.head_sent:  # too late for a 500: the response has begun
                    log.exception("Error handling request")
                else:
                    log.exception("Error handling request %s %s", env["REQUEST_METHOD"], env["RAW_URI"])
                    util.write_error(sock, 500, "Internal Server Error", "")
                return None
            finally:
                worker.request_ended(sock)
            if exchange.should_close():
                return None
            worker.fair_turn()

"""The HTTP/1.1 fast path of `GreenWorker`: plain requests parsed by gunicorn's C parser, answered lean.

gunicorn's per-request Python costs about 50 µs a request, more than the rest of a `GET /v1/pool`. For plain
requests this does the same work with a few dict operations: `gunicorn_h1c.parse_request_fast` (with
gunicorn's limits), an environ from a per-connection template, the head sent with the first body bytes.
Anything unusual (a parse error, HTTP/1.0, an uncommon method or target, `Transfer-Encoding`, `Expect`,
`Upgrade`, `_` in a header name, forwarder headers, a repeated singleton field) is pushed back and served by
gunicorn's own loop; a configuration that needs gunicorn per request turns it off (`FastPath.refusal`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import gunicorn_h1c
from gunicorn import SERVER_SOFTWARE, util
from gunicorn.config import PostRequest, PreRequest
from gunicorn.http.message import (
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    RFC9110_5_3_SINGLETON_FIELDS,
    RFC9112_TARGET_INVALID,
)
from gunicorn.http.wsgi import FileWrapper, WSGIErrorsWrapper

from .http1_body import NO_BODY, RECV, Body
from .http1_response import Exchange
from .problems import problem_bytes

__all__ = ["FastPath"]

log = logging.getLogger("gunicorn.error")

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
#: Request fields that need gunicorn's header policy: with one of these, gunicorn serves the request.
_POLICY_FIELDS = frozenset(("TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "TE"))
_MAX_HEADER_CACHE = 512


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
            more = sock.recv(RECV)
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
                body = Body(sock, rest[:length], length - min(len(rest), length))
                buf = rest[length:]
            else:
                body, buf = NO_BODY, rest
            env["wsgi.input"] = body
            keep = worker.count_request()
            exchange = Exchange(sock, env["REQUEST_METHOD"] == "HEAD", close or not keep)
            env["wsgi.early_hints"] = exchange.early_hints
            worker.request_started(sock)
            try:
                result = app(env, exchange.start_response)
                if body.truncated:  # the body's framing is lost: what follows it is not a request
                    exchange.must_close = True
                try:
                    if not (isinstance(result, FileWrapper) and exchange.send_file(result)):
                        for item in result:
                            exchange.write(item)
                        exchange.finish()
                finally:
                    if hasattr(result, "close"):
                        result.close()
                if body is not NO_BODY and not body.discard():
                    return None
            except OSError:
                raise
            except (Exception, SystemExit):
                if exchange.head_sent:  # too late for a 500: the response has begun
                    log.exception("Error handling request")
                else:
                    log.exception("Error handling request %s %s", env["REQUEST_METHOD"], env["RAW_URI"])
                    sock.sendall(problem_bytes(500, "Internal Server Error", ""))
                return None
            finally:
                worker.request_ended(sock)
            if exchange.should_close():
                return None
            worker.fair_turn()

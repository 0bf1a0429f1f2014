"""A loopback HTTP(S) test server for the http task's tests: a real server on an OS thread that counts
connections (total, open at once) and requests, with routes for echo, redirects, delays and big bodies."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools import require


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: TestServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        with server.lock:
            server.requests.append((self.command, self.path))
            server.active += 1
            server.max_active = max(server.max_active, server.active)
        try:
            handler = getattr(self, "route_" + parts.path.strip("/").replace("-", "_"), None)
            if handler is None:
                self._send(404, b"not found", "text/plain")
            else:
                handler(query, body)
        finally:
            with server.lock:
                server.active -= 1

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _route

    def _send(self, status: int, body: bytes, ctype: str | None = None, headers: dict | None = None,
              chunked: bool = False) -> None:  # fmt: skip
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            for i in range(0, len(body), 4096):
                piece = body[i : i + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def route_echo(self, query: dict, body: bytes) -> None:
        self._json({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                    "body": body.decode("utf-8", "replace")})  # fmt: skip

    def route_redirect(self, query: dict, body: bytes) -> None:
        self._send(int(query.get("code", 302)), b"moved", "text/plain", {"Location": query["to"]})

    def route_loop(self, query: dict, body: bytes) -> None:
        self._send(302, b"", None, {"Location": "/loop"})

    def route_sleep(self, query: dict, body: bytes) -> None:
        time.sleep(float(query.get("s", 0.2)))
        self._json({"slept": float(query.get("s", 0.2))})

    def route_big(self, query: dict, body: bytes) -> None:
        self._send(200, b"x" * int(query["n"]), "application/octet-stream", chunked="chunked" in query)

    def route_text(self, query: dict, body: bytes) -> None:
        self._send(200, "café".encode("latin-1"), "text/plain; charset=latin-1")

    def route_badjson(self, query: dict, body: bytes) -> None:
        self._send(200, b"{not json", "application/json")

    def route_garbage(self, query: dict, body: bytes) -> None:
        self.wfile.write(b"NOT-HTTP garbage\r\n\r\n")
        self.close_connection = True

    def route_close_after(self, query: dict, body: bytes) -> None:
        """Answer as if keep-alive, then close the connection (a server's idle timeout, in short)."""
        self._json({"ok": True})
        self.close_connection = True


class TestServer(ThreadingHTTPServer):
    """The server; `connections` counts accepted connections, `max_open` the most open at once."""

    __test__ = False
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.active = 0
        self.max_active = 0
        self.tls_failures = 0
        self.handler_errors = 0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        tls_sock = None
        try:
            if self.tls is not None:
                request.settimeout(10)
                try:
                    request = tls_sock = self.tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    with self.lock:
                        self.tls_failures += 1
                    return
            super().finish_request(request, client_address)
        finally:
            if tls_sock is not None:
                tls_sock.close()
            with self.lock:
                self.open -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, size caps) are expected: count, don't print."""
        with self.lock:
            self.handler_errors += 1

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class Certs:
    """PEM files made with the openssl CLI: a test CA, and server certificates it signed."""

    ca: Path
    cert: Path  # for 127.0.0.1 and localhost
    key: Path
    other_cert: Path  # for other.test only (a name mismatch when reached as 127.0.0.1)
    other_key: Path

    def server_context(self, other: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.other_cert if other else self.cert, self.other_key if other else self.key)
        return ctx


def make_certs(directory: Path) -> Certs:
    """A CA and two server certificates under `directory` (skips the test without the `openssl` command)."""
    (openssl,) = require("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=greenpool test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("other", "DNS:other.test")):
        (directory / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                 directory / "other.pem", directory / "other.key")  # fmt: skip

"""redis-py connections on pool_core's cooperative sockets: connect, TLS, reads and retries park the green thread.

redis-py's own `Connection._connect` resolves names with a blocking `socket.getaddrinfo` and returns a
stdlib socket; `Retry` sleeps with `time.sleep`; the hiredis parser's `can_read` calls `poll()` with a
timeout. Each of those would stop the hub (every green thread of the process) for as long as it waits.
Here `_connect` returns a `pool_core.GreenSocket` (or `GreenSSLSocket`), whose `settimeout` has the
stdlib's meaning but parks the green thread; the pure-Python RESP parsers read through it, so their
`can_read(timeout)` (a `recv` under a temporary timeout) is cooperative too; `GreenRetry` backs off with
`pool_core.sleep`. Nothing is monkey-patched.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis._parsers import _RESP2Parser, _RESP3Parser
from redis.retry import Retry

from pool_core import GreenSocket, Timeout, sleep, wrap_ssl
from pool_core.sockets import getaddrinfo

__all__ = ["GreenConnection", "GreenRetry", "GreenSSLConnection", "is_ip_literal"]

T = TypeVar("T")


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address (resolved in place, never through DNS)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GreenRetry(Retry):
    """redis-py's `Retry`, backing off with `pool_core.sleep` (the stock one calls `time.sleep`)."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Call `do` until it succeeds or fails with an unsupported error or more than `retries` times."""
        self._backoff.reset()
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if self._retries >= 0 and failures > self._retries:
                    raise error
                backoff = self._backoff.compute(failures)
                if backoff > 0:
                    sleep(backoff)


class GreenConnection(redis.Connection):
    """A TCP `redis.Connection` whose socket is a GreenSocket and whose parser is always pure Python.

    `socket_connect_timeout` bounds the whole connect (name resolution, TCP, TLS handshake) with a
    pool_core `Timeout`; `socket_timeout` becomes the green socket's timeout for every read and write.
    Host names resolve on an OS thread (`pool_core.execute`), IP literals in place.
    """

    def set_parser(self, parser_class: type) -> None:
        """Use the RESP2/RESP3 Python parser whatever was asked (hiredis' `can_read` polls the OS thread)."""
        if not (isinstance(parser_class, type) and issubclass(parser_class, (_RESP2Parser, _RESP3Parser))):
            parser_class = _RESP3Parser if self.protocol in (3, "3") else _RESP2Parser
        super().set_parser(parser_class)

    def _connect(self) -> GreenSocket:
        """Open the socket cooperatively within `socket_connect_timeout`, then arm `socket_timeout`."""
        deadline = Timeout(self.socket_connect_timeout)  # not an OSError: `_open` cannot mistake it for one
        try:
            sock = self._open()
        except Timeout as exc:
            if exc is not deadline:
                raise
            raise TimeoutError("timed out") from None  # redis-py turns socket.timeout into its TimeoutError
        finally:
            deadline.cancel()
        sock.settimeout(self.socket_timeout)
        return sock

    def _open(self) -> GreenSocket:
        """Try each resolved address in turn, like `socket.create_connection` (and redis-py's own loop)."""
        error: OSError | None = None
        for family, socktype, proto, _name, address in getaddrinfo(
            self.host, self.port, self.socket_type, socket.SOCK_STREAM
        ):
            sock = GreenSocket(family, socktype, proto)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.socket_keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for option, value in self.socket_keepalive_options.items():
                        sock.setsockopt(socket.IPPROTO_TCP, option, value)
                sock.connect(address)
                return sock
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                error = exc
        raise error or OSError(f"getaddrinfo returned an empty list for {self.host!r}")

    def get_resolved_ip(self) -> str | None:
        """The peer's address, else the host when it is an IP literal (never a blocking DNS look-up)."""
        sock = self._get_socket()
        if sock is not None:
            try:
                return sock.getpeername()[0]
            except OSError:
                pass
        return self.host if is_ip_literal(self.host) else None


class GreenSSLConnection(GreenConnection, redis.SSLConnection):
    """`rediss://`: a GreenConnection wrapped in TLS by `pool_core.wrap_ssl`, handshake within the connect timeout.

    Takes redis-py's `ssl_*` arguments; OCSP validation (which opens blocking sockets) is refused.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("ssl_validate_ocsp") or kwargs.get("ssl_validate_ocsp_stapled"):
            raise redis.RedisError("OCSP validation is not supported on cooperative connections")
        super().__init__(**kwargs)

    def _open(self) -> GreenSocket:
        sock = super()._open()
        try:
            return wrap_ssl(sock, self.ssl_context(), server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def ssl_context(self) -> ssl.SSLContext:
        """The client context redis-py's `SSLConnection` would build from the same `ssl_*` arguments."""
        context = ssl.create_default_context()
        context.check_hostname = self.check_hostname
        context.verify_mode = self.cert_reqs
        for flag in self.ssl_include_verify_flags or ():
            context.verify_flags |= flag
        for flag in self.ssl_exclude_verify_flags or ():
            context.verify_flags &= ~flag
        if self.certfile or self.keyfile:
            context.load_cert_chain(self.certfile, self.keyfile, self.certificate_password)
        if self.ca_certs is not None or self.ca_path is not None or self.ca_data is not None:
            context.load_verify_locations(cafile=self.ca_certs, capath=self.ca_path, cadata=self.ca_data)
        if self.ssl_min_version is not None:
            context.minimum_version = self.ssl_min_version
        if self.ssl_ciphers:
            context.set_ciphers(self.ssl_ciphers)
        return context

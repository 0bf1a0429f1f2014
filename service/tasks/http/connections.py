"""Keep-alive connections for the `http` task: at most `max_per_host` per (scheme, host, port).

A connection is an `http.client` connection whose `connect()` opens a cooperative `pool_core.sockets`
socket to an address the policy already checked (TLS through `wrap_ssl`, verifying the certificate
against the host name), so `http.client` does the HTTP/1.1 and every wait parks only the green thread.

`lease(key, ...)` parks while `max_per_host` connections to `key` are in use, hands back an idle one when
it can (dropping those idle too long or that the server has closed), and `Lease.release(reuse)` returns
the connection to the idle list or closes it. Idle connections are capped in total (`max_idle`).
"""

from __future__ import annotations

import http.client
import select
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pool_core import Semaphore
from pool_core.sockets import create_connection, wrap_ssl

from .errors import HttpConnectError, TLSError

__all__ = ["Connection", "ConnectionPool", "Key", "Lease"]

#: (scheme, host, port)
Key = tuple[str, str, int]


class Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to `host` (the name, for Host and SNI) made to one of `addresses`."""

    def __init__(self, key: Key, addresses: list[str], timeout: float, context: ssl.SSLContext | None) -> None:
        scheme, host, port = key
        super().__init__(host, port, timeout=timeout)
        if scheme == "https":
            self.default_port = http.client.HTTPS_PORT  # so the Host header omits :443
        self.key = key
        self.addresses = addresses
        self.context = context
        self.reused = False

    def connect(self) -> None:
        """Open a cooperative socket to the first allowed address that answers, then TLS if https."""
        errors = []
        for address in self.addresses:
            try:
                sock = create_connection((address, self.port), self.timeout)
                break
            except TimeoutError:
                raise
            except OSError as exc:
                errors.append(f"{address}: {exc}")
        else:
            raise HttpConnectError(f"cannot connect to {self.host}:{self.port}: {'; '.join(errors)}")
        if self.context is not None:
            try:
                sock = wrap_ssl(sock, self.context, server_hostname=self.host)
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise TLSError(
                    f"TLS certificate verification failed for {self.host}:{self.port}: {exc.verify_message}"
                ) from None
            except ssl.SSLError as exc:
                sock.close()
                raise TLSError(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from None
            except BaseException:
                sock.close()
                raise
        self.sock = sock

    def is_dropped(self) -> bool:
        """True if the connection is closed or the server sent something (EOF) while it was idle."""
        sock = self.sock
        if sock is None:
            return True
        try:
            fd = sock.fileno()
            if fd < 0:
                return True
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                return True  # decrypted bytes nobody asked for
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


@dataclass
class _Host:
    """The connections of one key: a bound on those open, and the idle ones (newest last)."""

    slots: Semaphore
    idle: deque[tuple[Connection, float]] = field(default_factory=deque)
    leased: int = 0


class Lease:
    """One connection slot for a key; `conn` is an idle connection to reuse, or None (make a new one)."""

    __slots__ = ("pool", "key", "conn", "_released")

    def __init__(self, pool: ConnectionPool, key: Key, conn: Connection | None) -> None:
        self.pool = pool
        self.key = key
        self.conn = conn
        self._released = False

    def release(self, reuse: bool) -> None:
        """Give the slot back; keep `conn` idle for reuse if `reuse` and it is still open, else close it."""
        if not self._released:
            self._released = True
            self.pool._release(self, reuse)


class ConnectionPool:
    """Idle keep-alive connections and per-host bounds; one per http task (per registry)."""

    def __init__(self, max_per_host: int, max_idle: int, idle_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_per_host = max_per_host
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._hosts: dict[Key, _Host] = {}
        self._idle_count = 0

    def lease(self, key: Key) -> Lease:
        """Park until a slot for `key` is free; return it with an idle connection to reuse, if any."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(Semaphore(self.max_per_host))
        host.leased += 1  # counted before parking, so the entry is not dropped while we wait
        try:
            host.slots.acquire()
        except BaseException:
            host.leased -= 1
            self._forget_if_unused(key, host)
            raise
        return Lease(self, key, self._take_idle(host))

    def _take_idle(self, host: _Host) -> Connection | None:
        now = self._clock()
        while host.idle:
            conn, since = host.idle.pop()
            self._idle_count -= 1
            if now - since <= self.idle_timeout and not conn.is_dropped():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _release(self, lease: Lease, reuse: bool) -> None:
        host = self._hosts[lease.key]
        conn = lease.conn
        if conn is not None:
            if reuse and conn.sock is not None and self.max_idle > 0:
                host.idle.append((conn, self._clock()))
                self._idle_count += 1
                if self._idle_count > self.max_idle:
                    self._evict_oldest()
            else:
                conn.close()
        host.leased -= 1
        host.slots.release()
        self._forget_if_unused(lease.key, host)

    def _forget_if_unused(self, key: Key, host: _Host) -> None:
        if not host.leased and not host.idle and self._hosts.get(key) is host:
            del self._hosts[key]

    def _evict_oldest(self) -> None:
        oldest_key, oldest_since = None, None
        for key, host in self._hosts.items():
            if host.idle and (oldest_since is None or host.idle[0][1] < oldest_since):
                oldest_key, oldest_since = key, host.idle[0][1]
        if oldest_key is not None:
            host = self._hosts[oldest_key]
            conn, _ = host.idle.popleft()
            self._idle_count -= 1
            conn.close()
            self._forget_if_unused(oldest_key, host)

    def idle_count(self) -> int:
        """Idle connections kept now."""
        return self._idle_count

    def close(self) -> None:
        """Close every idle connection (leased ones close when released without reuse)."""
        for key, host in list(self._hosts.items()):
            while host.idle:
                host.idle.popleft()[0].close()
                self._idle_count -= 1
            self._forget_if_unused(key, host)

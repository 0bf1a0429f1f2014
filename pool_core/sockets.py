"""Cooperative sockets: `GreenSocket` (`greensocket`), TLS (`tls`), and connecting, listening and name lookup.

`makefile` works on both kinds of socket, so `http.client`, `http.server` handlers and line-oriented
protocols run over them unchanged.

Name resolution: `getaddrinfo` here (and so `create_connection`) resolves a numeric host in place and a
host name on an OS thread (`pool_core.threads`), so DNS never blocks the hub. `connect()` itself expects a
numeric address (given a name, the stdlib would resolve it blocking).
"""

from __future__ import annotations

import socket
from typing import Any

from .greensocket import GreenSocket
from .threads import execute
from .tls import GreenSSLSocket, wrap_ssl

__all__ = ["GreenSSLSocket", "GreenSocket", "create_connection", "getaddrinfo", "listen", "wrap_ssl"]


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list:
    """`socket.getaddrinfo` that never blocks the hub: numeric hosts in place, names on an OS thread."""
    try:
        return socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    return execute(socket.getaddrinfo, host, port, family, type, proto, flags)


def create_connection(
    address: tuple[str, int],
    timeout: float | None | object = None,
    source_address: tuple[str, int] | None = None,
) -> GreenSocket:
    """Connect a TCP GreenSocket to `address` (trying each resolved address in turn), like the stdlib's."""
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]  # http.client passes it
        timeout = socket.getdefaulttimeout()
    host, port = address
    errors: list[OSError] = []
    for family, type_, proto, _canonname, sockaddr in getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = GreenSocket(family, type_, proto)
        try:
            sock.settimeout(timeout)  # type: ignore[arg-type]
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            errors.append(exc)
    if not errors:
        raise OSError(f"getaddrinfo returned an empty list for {host!r}")
    raise errors[0]


def listen(
    addr: tuple[str, int] | str,
    backlog: int = 128,
    *,
    family: int | None = None,
    reuse_addr: bool = True,
    reuse_port: bool = False,
) -> GreenSocket:
    """A listening GreenSocket bound to `addr` (a str is a Unix socket path); family inferred from `addr`."""
    if family is None and isinstance(addr, str):
        family = socket.AF_UNIX
    elif family is None:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = GreenSocket(family, socket.SOCK_STREAM)
    try:
        if reuse_addr and family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock

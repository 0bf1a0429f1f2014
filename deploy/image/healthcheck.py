#!/usr/bin/env python3
"""The image's HEALTHCHECK: `GET /healthz` on the address greenpool serves (GREENPOOL_BIND), exit 0 on 200.

The address follows the configuration, so changing the port (or binding a unix socket) needs no second edit:
a wildcard host (0.0.0.0, ::, empty) is reached through the matching loopback address.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

from service.config import DEFAULT_BIND

TIMEOUT_S = 2.0
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (`unix:PATH` binds)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def connection(bind: str, timeout: float = TIMEOUT_S) -> http.client.HTTPConnection:
    """A connection to the server listening on `bind` (`host:port`, `[v6]:port` or `unix:PATH`)."""
    if bind.startswith("unix:"):
        return UnixHTTPConnection(bind[len("unix:") :], timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    return http.client.HTTPConnection(WILDCARDS.get(host, host), int(port), timeout=timeout)


def main() -> int:
    """0 when /healthz answers 200 within the timeout, else 1 with the reason on stderr."""
    bind = os.environ.get("GREENPOOL_BIND") or DEFAULT_BIND
    try:
        conn = connection(bind)
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"greenpool-healthcheck: {bind}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"greenpool-healthcheck: {bind}: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

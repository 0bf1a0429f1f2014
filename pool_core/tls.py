"""TLS on green sockets: `wrap_ssl` gives a `GreenSSLSocket` whose handshake, reads and writes park on the hub.

They loop on `SSLWantReadError` / `SSLWantWriteError`. A read always asks OpenSSL first, so bytes already
decrypted (`pending()`) are returned before the green thread ever waits on the descriptor.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from .greensocket import GreenSocket

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    ssl = None  # type: ignore[assignment]

__all__ = ["GreenSSLSocket", "wrap_ssl"]


class GreenSSLSocket(GreenSocket):
    """A TLS GreenSocket: the handshake, reads and writes park on the hub instead of blocking.

    Built by `wrap_ssl`. An unconnected socket stays plain until `connect()` succeeds, then is wrapped
    and (by default) handshakes; `accept()` on a listening one returns server-side GreenSSLSockets whose
    handshake runs on their first read or write (or an explicit `do_handshake()`), so a slow client never
    stalls the accept loop.
    """

    def __init__(
        self,
        sock: socket.socket | GreenSocket,
        context: ssl.SSLContext,
        server_side: bool = False,
        server_hostname: str | None = None,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
    ) -> None:
        super().__init__(sock)
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        if not isinstance(self._sock, ssl.SSLSocket) and _is_connected(self._sock):
            self._start_tls()
            if do_handshake_on_connect:
                try:
                    self.do_handshake()
                except BaseException:
                    self.close()
                    raise

    def _start_tls(self) -> None:
        self._sock = self.context.wrap_socket(
            self._sock,
            server_side=self.server_side,
            server_hostname=self.server_hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=self.suppress_ragged_eofs,
        )
        self._sock.setblocking(False)

    def do_handshake(self) -> None:
        """Run the TLS handshake, parking whenever OpenSSL wants to read or write."""
        self._io(True, self._sock.do_handshake)

    def connect(self, address: Any) -> None:
        """Connect cooperatively, then start TLS (and handshake unless `do_handshake_on_connect=False`)."""
        if isinstance(self._sock, ssl.SSLSocket):
            raise ValueError("attempt to connect already-connected SSLSocket!")
        super().connect(address)
        self._start_tls()
        if self.do_handshake_on_connect:
            self.do_handshake()

    def accept(self) -> tuple[GreenSSLSocket, Any]:
        """Accept a connection and return it as a server-side GreenSSLSocket (handshake on first use)."""
        conn, addr = self._io(True, self._sock.accept)
        child = GreenSSLSocket(
            conn,
            self.context,
            server_side=True,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=self.suppress_ragged_eofs,
        )
        child._timeout = socket.getdefaulttimeout()
        return child, addr

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive decrypted bytes into `buffer`; OpenSSL's buffered bytes come before any wait."""
        return self._io(True, self._sock.recv_into, buffer, nbytes or None, flags)

    def pending(self) -> int:
        """Decrypted bytes already buffered by OpenSSL (readable without touching the descriptor)."""
        return self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0

    def unwrap(self) -> GreenSocket:
        """Send and await the TLS close-notify; return the plain GreenSocket underneath."""
        plain = self._io(True, self._sock.unwrap)
        green = GreenSocket(plain)
        green._timeout = self._timeout
        self._closed = True
        return green

    def dup(self) -> GreenSocket:
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError as exc:
        if exc.errno not in (errno.ENOTCONN, errno.EINVAL):
            raise
        return False
    return True


def wrap_ssl(
    sock: socket.socket | GreenSocket,
    context: ssl.SSLContext,
    server_side: bool = False,
    server_hostname: str | None = None,
    do_handshake_on_connect: bool = True,
    suppress_ragged_eofs: bool = True,
) -> GreenSSLSocket:
    """Wrap a (green or plain) socket in TLS with `context`; a connected one handshakes cooperatively now.

    Like `SSLContext.wrap_socket`, this takes over the descriptor: close the returned socket, not `sock`.
    A failed handshake closes it and raises (e.g. `ssl.SSLCertVerificationError`).
    """
    if ssl is None:  # pragma: no cover
        raise RuntimeError("this Python has no ssl module")
    return GreenSSLSocket(sock, context, server_side, server_hostname, do_handshake_on_connect, suppress_ragged_eofs)

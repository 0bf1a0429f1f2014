"""`Connection`'s send deadline (GREENPOOL_SEND_TIMEOUT) on a real socket pair: it bounds how long the client
accepts no byte, not how long a response takes, so a slow but steady reader gets all of it and a stalled
one is cut off with `SlowClient` (the worker then closes the connection; see test_hostile_http.py)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import pool_core
from service.server.connection import SEND, Connection, SlowClient

pytestmark = pytest.mark.timeout(30)

DEADLINE = 0.5
PAYLOAD = 2 << 20  # far beyond what the socket buffers hold


def _pair() -> tuple[Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    conn = Connection(pool_core.GreenSocket(ours))
    conn.send_timeout = DEADLINE
    return conn, theirs


def _read(sock: socket.socket, pause: float, stop_after: int, got: list[int]) -> None:
    """Read in 64 KiB steps, pausing `pause` between them, until the end or `stop_after` bytes."""
    sock.settimeout(10)
    while got[0] < stop_after:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        got[0] += len(chunk)
        time.sleep(pause)


def _send(conn: Connection) -> BaseException | None:
    def run() -> BaseException | None:
        try:
            conn.sendall(b"x" * PAYLOAD)
        except SlowClient as exc:
            return exc
        return None

    return pool_core.spawn(run).wait()


def test_a_slow_but_steady_reader_gets_the_whole_response() -> None:
    conn, theirs = _pair()
    got = [0]
    reader = threading.Thread(target=_read, args=(theirs, 0.05, PAYLOAD, got))
    reader.start()
    start = time.monotonic()
    outcome = _send(conn)
    conn.close()
    reader.join(10)
    theirs.close()
    assert outcome is None, outcome
    assert got[0] == PAYLOAD
    assert time.monotonic() - start > DEADLINE  # longer than the deadline in all: it bounds stalls only


def test_a_reader_that_stops_is_cut_off_after_the_deadline() -> None:
    conn, theirs = _pair()
    got = [0]
    reader = threading.Thread(target=_read, args=(theirs, 0.0, 1 << 20, got))  # reads 1 MiB, then nothing
    reader.start()
    start = time.monotonic()
    outcome = _send(conn)
    elapsed = time.monotonic() - start
    conn.close()
    reader.join(10)
    theirs.close()
    assert isinstance(outcome, SlowClient) and outcome.phase == SEND, outcome
    assert "accepted no byte" in str(outcome)
    assert DEADLINE <= elapsed < DEADLINE + 5, elapsed
    assert got[0] >= 1 << 20

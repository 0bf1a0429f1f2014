"""Issue #11 point 6: a stalled result stream holds a bounded amount, whatever the size of the pile.

Eight clients open result streams (NDJSON and SSE) on a finished 8 MiB pile and never read: the worker's
RSS may grow by at most the per-reader bound of service/api/streams.py (256 KiB, README "Memory bounds")
per reader, plus a fixed allowance for the connections themselves.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests
from bounds_support import MIB, assert_healthy_fast, rss, worker_pid
from serverkit import Server, start_server
from tools import wait_until

pytestmark = pytest.mark.timeout(90)

READERS = 8
JOBS, RESULT = 512, 16 << 10  # an 8 MiB pile
PER_READER = 256 << 10  # the README's bound
ALLOWANCE = 6 * MIB  # sockets, green threads and allocator slack of eight connections


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("streams"),
                       env={"GREENPOOL_PLUGINS": "tests.bounds.bound_tasks", "GREENPOOL_POOL_SIZE": "200"})  # fmt: skip
    yield srv
    srv.stop()


def finished_pile(server: Server) -> str:
    """A closed pile of JOBS results of RESULT bytes each, every job ended."""
    resp = requests.post(server.url + "/v1/piles", json={"task": "bound_blob", "items": [{"size": RESULT}] * JOBS},
                         timeout=30)  # fmt: skip
    assert resp.status_code == 201, resp.text
    pile_id = resp.json()["id"]
    wait_until(lambda: summary(server, pile_id)["done"] == JOBS, 30, what="the pile to finish")
    return pile_id


def summary(server: Server, pile_id: str) -> dict:
    return requests.get(f"{server.url}/v1/piles/{pile_id}", timeout=5).json()


def stalled_stream(server: Server, pile_id: str, sse: bool) -> socket.socket:
    """A connection that asks for the pile's results and never reads (a 4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.address)
    accept = "text/event-stream" if sse else "application/x-ndjson"
    sock.sendall(f"GET /v1/piles/{pile_id}/results HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n".encode())
    return sock


def test_stalled_streams_on_a_large_pile_hold_a_bounded_amount_each(server: Server) -> None:
    pile_id = finished_pile(server)
    with requests.get(f"{server.url}/v1/piles/{pile_id}/results", stream=True, timeout=30) as resp:
        lines = [line for line in resp.iter_lines() if line]  # one full read first: the allocator is warm
    assert len(lines) == JOBS
    pid = worker_pid(server)
    before = rss(pid)
    socks = [stalled_stream(server, pile_id, sse=i % 2 == 1) for i in range(READERS)]
    try:
        wait_until(lambda: summary(server, pile_id)["readers"] == READERS, 20, what="every stream to start")
        peak, deadline = rss(pid), time.monotonic() + 1.5  # sample while the writers fill what they can
        while time.monotonic() < deadline:
            peak = max(peak, rss(pid))
            time.sleep(0.05)
        growth = peak - before
        print(f"RSS {before / MIB:.1f} MiB -> {peak / MIB:.1f} MiB with {READERS} stalled streams "
              f"(+{growth / MIB:.2f} MiB)")  # fmt: skip
        assert growth <= READERS * PER_READER + ALLOWANCE, f"+{growth / MIB:.1f} MiB"
        assert_healthy_fast(server)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: summary(server, pile_id)["readers"] == 0, 20, what="the stalled streams to be closed")
    final = summary(server, pile_id)
    assert final["succeeded"] == JOBS and final["pending"] == 0, final
    assert_healthy_fast(server)

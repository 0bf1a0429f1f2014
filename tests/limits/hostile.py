"""What every hostile-client test checks after its attack, and raw-socket exchanges with a real server.

After each attack the server must still answer `/healthz` within 100 ms on a fresh connection, and every
job it accepted must reach exactly one terminal state (listed once, terminal, with `finished_at`).
"""

from __future__ import annotations

import json
import socket
import time

import requests
from serverkit import Server

PROBLEM = "application/problem+json"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
HEALTHZ_WITHIN = 0.1  # seconds: the acceptance bound right after an attack


def exchange(server: Server, data: bytes, half_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send `data` on a new connection (then shut down writing if `half_close`) and read until the server
    closes it; fails if it is still open after `timeout` seconds."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
    raise AssertionError(f"the connection was still open after {timeout}s: {received!r}")


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of the one HTTP/1.1 response in `raw` (Content-Length framed)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def problem_of(raw: bytes, status: int) -> dict:
    """The problem document of the one response in `raw`, asserting its status and media type."""
    code, headers, body = split_response(raw)
    assert code == status, raw
    assert headers["content-type"].startswith(PROBLEM), raw
    length = int(headers["content-length"])
    assert len(body) == length, f"more than one response on the connection: {raw!r}"
    document = json.loads(body)
    assert document["status"] == status and document["detail"], document
    return document


def assert_healthy(server: Server, settle: float = 10.0) -> None:
    """`/healthz` answers within 100 ms, and every job the server accepted reaches one terminal state
    (waiting at most `settle` seconds for them)."""
    start = time.monotonic()
    resp = requests.get(server.url + "/healthz", timeout=5)
    elapsed = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    assert elapsed < HEALTHZ_WITHIN, f"/healthz took {elapsed * 1000:.0f} ms after the attack"
    deadline = time.monotonic() + settle
    while True:
        jobs = requests.get(server.url + "/v1/jobs?limit=1000", timeout=5).json()["jobs"]
        pending = [job for job in jobs if job["status"] not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not pending, f"jobs not terminal after {settle}s: {pending}"
    ids = [job["id"] for job in jobs]
    assert len(ids) == len(set(ids)), "a job is listed twice"
    assert all(job["finished_at"] for job in jobs), jobs

"""SIGTERM with the SQLite store (design §7): readiness and new submissions answer 503, the queued jobs are
not cancelled but kept in the file, a job still running at the end of the grace period ends `cancelled`,
the server exits 0, and after a restart on the same file every queued job runs.

The worker stops accepting on SIGTERM and closes idle keep-alive connections, so the test speaks to the
draining server through connections that were busy when the signal came: each a long-poll on the running
job with /readyz or a submission pipelined behind it, which the worker answers during the drain."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
from serverkit import Server, start_server

pytestmark = pytest.mark.timeout(90)
QUEUED = 1000
GRACE = 3  # gunicorn's --graceful-timeout: the sleeper is still running when it ends


def _serve(tmp_path: Path, db: Path) -> Server:
    env = {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_POOL_SIZE": "1", "GREENPOOL_MAX_QUEUED": str(2 * QUEUED)}
    return start_server(tmp_path, env, ["--graceful-timeout", str(GRACE)])


def _request(method: str, path: str, body: dict | None = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
    head += "Content-Type: application/json\r\n" if body is not None else ""
    return head.encode() + b"\r\n" + data


def _responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each HTTP/1.1 response in `raw` (each with a Content-Length)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, rest[:size]))
        raw = rest[size:]
    return found


def _read_all(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded by `within` seconds)."""
    sock.settimeout(within)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_keeps_1000_queued_jobs_for_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = _serve(tmp_path, db)
    sleeper = server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 60}}).json()["id"]
    pile = server.post("/v1/piles", json={"jobs": [{"task": "echo", "args": {"n": n}} for n in range(QUEUED)]})
    assert pile.status_code == 201, pile.text
    deadline = time.monotonic() + 10
    while server.get(f"/v1/jobs/{sleeper}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.get("/v1/pool").json()["queued"] == QUEUED
    server.session.close()

    poll = _request("GET", f"/v1/jobs/{sleeper}?wait=30")
    behind = (_request("GET", "/readyz"), _request("POST", "/v1/jobs", {"task": "echo", "args": {}}))
    socks = [socket.create_connection(server.address, timeout=5) for _ in behind]
    try:
        for sock, pipelined in zip(socks, behind, strict=True):
            sock.sendall(poll + pipelined)
        time.sleep(0.3)  # the long-polls are read and parked (not a synchronisation: a missed one fails below)
        t_term = time.monotonic()
        server.signal(signal.SIGTERM)
        answers = [_responses(_read_all(sock, GRACE + 10)) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert server.wait_exit(GRACE + 10) == 0, server.log_tail()
    assert time.monotonic() - t_term < GRACE + 5

    assert [len(a) for a in answers] == [2, 2], answers
    ((_, _, polled), (ready, ready_headers, _)), (_, (late, late_headers, late_body)) = answers
    job = json.loads(polled)
    assert job["status"] == "cancelled" and job["error"]["type"] == "Cancelled", job  # still running at the end
    assert ready == 503 and ready_headers["content-type"].startswith("application/problem+json")
    assert late == 503 and late_headers["content-type"].startswith("application/problem+json")
    assert int(late_headers["retry-after"]) > 0 and json.loads(late_body)["status"] == 503
    server.stop()

    again = _serve(tmp_path, db)
    try:
        pile_id = pile.json()["id"]
        deadline = time.monotonic() + 30
        while (summary := again.get(f"/v1/piles/{pile_id}").json())["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert summary["pending"] == 0 and summary["succeeded"] == QUEUED, summary
        assert again.get(f"/v1/jobs/{sleeper}").json()["status"] == "cancelled"
        pool = again.get("/v1/pool").json()
        assert pool["cancelled"] == 0 and pool["failed"] == 0 and pool["succeeded"] == QUEUED, pool
    finally:
        again.stop()

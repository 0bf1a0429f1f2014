"""Helpers for the bound tests: the worker's RSS from /proc, a timed /healthz."""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests
from serverkit import Server

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


def worker_pid(server: Server) -> int:
    """The pid of the gunicorn master's one worker process."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes (/proc/<pid>/statm, second field, in pages)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def healthz_ms(server: Server) -> float:
    """Milliseconds for a fresh connection's GET /healthz (asserting it answers 200)."""
    start = time.perf_counter()
    resp = requests.get(server.url + "/healthz", timeout=5)
    elapsed = (time.perf_counter() - start) * 1000
    assert resp.status_code == 200, resp.text
    return elapsed


def assert_healthy_fast(server: Server, limit_ms: float = 100.0) -> None:
    """/healthz answers within `limit_ms` (the best of three tries, so one scheduling hiccup is no failure)."""
    best = min(healthz_ms(server) for _ in range(3))
    assert best < limit_ms, f"/healthz took {best:.1f} ms"

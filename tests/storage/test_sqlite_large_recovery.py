"""100,000 queued jobs in the SQLite file (design §7, issue #13): after a `kill -9` and a restart on the same
file the server is ready (`/readyz` 200) within 5 s of its start, and every one of them runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from serverkit import start_server

pytestmark = pytest.mark.timeout(120)
JOBS, PER_PILE = 100_000, 10_000
READY_WITHIN = 5.0


def test_100000_queued_jobs_are_ready_within_5_s_of_a_restart_and_all_run(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    env = {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": str(2 * JOBS),
           "GREENPOOL_MAX_PILE_SIZE": str(PER_PILE)}  # fmt: skip
    server = start_server(tmp_path, env)
    piles = []
    try:
        for first in range(0, JOBS, PER_PILE):
            jobs = [{"task": "echo", "args": {"n": n}} for n in range(first, first + PER_PILE)]
            resp = server.post("/v1/piles", json={"jobs": jobs}, timeout=60)
            assert resp.status_code == 201, resp.text
            piles.append(resp.json()["id"])
        assert server.get("/v1/pool").json()["queued"] == JOBS
    finally:
        server.kill()
        server.stop()

    started = time.monotonic()
    again = start_server(tmp_path, env, ready_path="/readyz", boot_timeout=30)
    ready_s = time.monotonic() - started
    try:
        assert ready_s < READY_WITHIN, f"/readyz answered 200 {ready_s:.2f} s after the start"
        assert again.get("/v1/pool").json()["queued"] == JOBS
        assert again.patch("/v1/pool", json={"size": 100}).status_code == 200
        deadline = time.monotonic() + 60
        while (pool := again.get("/v1/pool").json())["succeeded"] < JOBS and time.monotonic() < deadline:
            time.sleep(0.2)
        ran_s = time.monotonic() - started - ready_s
        assert pool["succeeded"] == JOBS and pool["queued"] == 0 and pool["failed"] == 0, pool
        for pile_id in piles:
            summary = again.get(f"/v1/piles/{pile_id}").json()
            assert summary["succeeded"] == PER_PILE and summary["pending"] == 0, summary
    finally:
        again.stop()
    print(f"\n[recovery] {JOBS} queued jobs: /readyz 200 {ready_s:.2f} s after the start; all ran in {ran_s:.1f} s")

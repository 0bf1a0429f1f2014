"""A store that cannot take more (design §7), with a real server on a real SQLite file: beyond
GREENPOOL_MAX_STORE_BYTES, or while another process holds the file's write lock, submissions answer 503
`store-unavailable` (problem+json, Retry-After), never 500; nothing already accepted is lost; and the server
accepts again by itself once retention frees room, or the lock is released; /metrics says so meanwhile
(`greenpool_store_unavailable`)."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest
import requests
from serverkit import Server, start_server

pytestmark = pytest.mark.timeout(90)
CAP = 256 * 1024  # bytes of pages in use; an empty store uses a few dozen KiB
PAD = "x" * 2000  # each echo job keeps about twice this (args and result)
MAX_SUBMITS = 2000  # bound on the loop that fills the store


def _echo(server: Server) -> requests.Response:
    return server.post("/v1/jobs", json={"task": "echo", "args": {"pad": PAD}})


def _is_store_unavailable(resp: requests.Response) -> bool:
    if resp.status_code != 503:
        return False
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert int(resp.headers["retry-after"]) > 0, resp.headers
    body = resp.json()
    assert body["type"].endswith("/store-unavailable") and body["status"] == 503, body
    return True


def _refusing(server: Server) -> float:
    """The `greenpool_store_unavailable` gauge of /metrics."""
    found = re.search(r"^greenpool_store_unavailable (\S+)$", server.get("/metrics").text, re.MULTILINE)
    assert found, "no greenpool_store_unavailable in /metrics"
    return float(found.group(1))


def _accepted_again(server: Server, within: float) -> requests.Response:
    """Submit (a few per second) until one is accepted or `within` s pass; the last answer."""
    deadline = time.monotonic() + within
    while True:
        resp = _echo(server)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        assert _is_store_unavailable(resp), resp.text
        time.sleep(0.2)


def test_a_full_store_refuses_with_503_keeps_what_it_accepted_and_accepts_after_retention(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_MAX_STORE_BYTES": str(CAP),
                                     "GREENPOOL_RESULT_TTL": "3"})  # fmt: skip
    try:
        accepted: list[str] = []
        for _ in range(MAX_SUBMITS):
            resp = _echo(server)
            if resp.status_code != 202:
                break
            accepted.append(resp.json()["id"])
        assert _is_store_unavailable(resp), resp.text
        assert 10 < len(accepted) < MAX_SUBMITS, len(accepted)
        assert _is_store_unavailable(server.post("/v1/piles", json={"jobs": [{"task": "echo", "args": {}}]}))
        for job_id in accepted:  # nothing accepted is lost (all still within their retention)
            assert server.get(f"/v1/jobs/{job_id}").status_code == 200, job_id
        assert server.get("/readyz").status_code == 200, "a full store still serves reads"
        assert _refusing(server) == 1.0
        again = _accepted_again(server, within=30)  # the records expire (3 s) and their pages are freed
        assert again.status_code == 202, again.text
        assert _refusing(server) == 0.0
    finally:
        server.stop()
    with sqlite3.connect(db) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count",
                                                                                 "page_size"))  # fmt: skip
    assert (pages - free) * size < 2 * CAP, (pages, free, size)


def _map(server: Server) -> requests.Response:
    return server.post("/v1/map", json={"task": "echo", "items": [{"n": 1}, {"n": 2}]})


def test_a_locked_store_answers_503_and_recovers_when_the_lock_goes(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_MAX_STREAMS_PER_CLIENT": "1"})
    try:
        before = _echo(server)
        assert before.status_code == 202, before.text
        other = sqlite3.connect(db, isolation_level=None, timeout=5)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            during = _map(server)  # its commit waits out the busy timeout, then fails: its stream never starts
            assert _is_store_unavailable(during), during.text
            assert "locked" in during.json()["detail"], during.json()
            assert _is_store_unavailable(_echo(server)), "refused up front while commits fail"
            assert server.get(f"/v1/jobs/{before.json()['id']}").status_code == 200
        finally:
            other.execute("ROLLBACK")
            other.close()
        after = _accepted_again(server, within=20)
        assert after.status_code == 202, after.text
        streamed = _map(server)  # the refused map's stream slot (one per client here) was given back
        assert streamed.status_code == 200 and len(streamed.text.splitlines()) == 2, streamed.text
        # (the job whose commit failed stays in memory and is committed once the lock goes: a client that
        # retries such a 503 with the same Idempotency-Key gets that job back rather than a second one)
        assert server.get(f"/v1/jobs/{after.json()['id']}", params={"wait": 5}).json()["status"] == "succeeded"
    finally:
        server.stop()

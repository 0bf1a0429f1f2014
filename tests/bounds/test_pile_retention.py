"""Issue #11 point 7: open piles that are never closed expire, and piles hold no more than retention allows.

With GREENPOOL_RESULT_TTL=1 and GREENPOOL_MAX_RECORDS=100, a client creates 120 open piles of 400 jobs and
never closes them. The worker's RSS may grow by what the limits allow at any moment (queued and running
jobs, MAX_RECORDS ended ones, and what a pile keeps of each member whose record was evicted; README "Memory
bounds"), every job ends `succeeded`, and every pile (and its results) is gone once it has been idle for the
TTL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from bounds_support import MIB, assert_healthy_fast, rss, worker_pid
from serverkit import Server, start_server
from tools import wait_until

pytestmark = pytest.mark.timeout(180)

PILES, JOBS = 120, 400
MAX_QUEUED, POOL_SIZE, MAX_RECORDS = 1000, 200, 100
PER_JOB = 3 << 10  # a queued, running or kept echo job, generously (its record, args, result, log entry)
PER_MEMBER = 192  # what a pile keeps of a member whose record was evicted (service.storage.records.Evicted)
ALLOWANCE = 8 * MIB  # the connections, request bodies and allocator slack
BOUND = (MAX_QUEUED + POOL_SIZE + MAX_RECORDS) * PER_JOB + PILES * JOBS * PER_MEMBER + ALLOWANCE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"GREENPOOL_RESULT_TTL": "1", "GREENPOOL_MAX_RECORDS": str(MAX_RECORDS),
           "GREENPOOL_POOL_SIZE": str(POOL_SIZE), "GREENPOOL_MAX_QUEUED": str(MAX_QUEUED),
           "GREENPOOL_MAX_QUEUED_PER_CLIENT": str(MAX_QUEUED)}  # fmt: skip
    srv = start_server(tmp_path_factory.mktemp("retention"), env=env)
    yield srv
    srv.stop()


def open_pile(http: requests.Session, server: Server) -> str:
    """An open pile of JOBS echo jobs (waiting for the queue to drain when it answers 429)."""
    body = {"task": "echo", "items": [{"n": n} for n in range(JOBS)], "open": True}
    for _ in range(100):
        resp = http.post(server.url + "/v1/piles", json=body, timeout=30)
        if resp.status_code != 429:
            assert resp.status_code == 201, resp.text
            return resp.json()["id"]
        drained = lambda: http.get(server.url + "/v1/pool", timeout=5).json()["queued"] == 0  # noqa: E731
        wait_until(drained, 30, what="the queue to drain")
    raise AssertionError("the queue never had room")


def test_open_piles_never_closed_expire_and_memory_stays_within_the_limits(server: Server) -> None:
    http = requests.Session()
    pid = worker_pid(server)
    open_pile(http, server)  # warm the allocator with one pile first
    before = peak = rss(pid)
    piles = [open_pile(http, server)]
    added = http.post(f"{server.url}/v1/piles/{piles[0]}/jobs", json={"task": "echo", "items": [{}]}, timeout=10)
    first_job = added.json()["added"][0]["job_id"]
    while len(piles) < PILES:
        piles.append(open_pile(http, server))
        peak = max(peak, rss(pid))

    def all_ended() -> bool:
        stats = http.get(server.url + "/v1/pool", timeout=5).json()
        return stats["submitted"] == stats["succeeded"] == (PILES + 1) * JOBS + 1

    wait_until(all_ended, 60, what="every job to succeed")
    peak = max(peak, rss(pid))
    growth = peak - before
    print(f"RSS {before / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB over {PILES} open piles of {JOBS} jobs "
          f"(+{growth / MIB:.1f} MiB; bound +{BOUND / MIB:.1f} MiB)")  # fmt: skip
    assert growth <= BOUND, f"+{growth / MIB:.1f} MiB"
    assert_healthy_fast(server)

    # a stream on an open pile: every position, at most MAX_RECORDS results still held; it ends on expiry
    with http.get(f"{server.url}/v1/piles/{piles[-1]}/results", stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        records = [json.loads(line) for line in resp.iter_lines() if line]
    assert sorted(r["index"] for r in records) == list(range(JOBS))
    held = [r for r in records if r["status"] == "succeeded"]
    assert len(held) <= MAX_RECORDS and all(r["result"] == {"n": r["index"]} for r in held)
    evicted = [r for r in records if r["status"] == "evicted"]
    assert len(held) + len(evicted) == JOBS and all(r["error"]["type"] == "ResultEvicted" for r in evicted)
    assert http.get(f"{server.url}/v1/jobs/{first_job}", timeout=5).status_code == 404  # evicted: MAX_RECORDS

    def all_gone() -> bool:
        return all(http.get(f"{server.url}/v1/piles/{p}", timeout=5).status_code == 404 for p in piles)

    wait_until(all_gone, 15, what="every idle open pile to expire", interval=0.5)
    assert http.get(f"{server.url}/v1/piles/{piles[0]}/results", timeout=5).status_code == 404
    assert_healthy_fast(server)

"""The Redis store behind real servers (`GREENPOOL_STORE=redis://…`): the API on it; a `kill -9` and a restart
on the same Redis keep records, pile stream positions, idempotency keys and pool sizes, and run queued jobs
again; two servers on one Redis read each other's jobs; Redis stopped under submissions answers 503 with
Retry-After (never a 500), loses no acknowledged job, writes the outcome of a job that ended meanwhile once
it is back, and the service resumes by itself; hub timers (a delay, a timeout) work on Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import test_redis_support
from serverkit import Server, start_server
from test_sqlite_resume import FIRST, HALF, LATER, _events, _stream, _until, assert_kept

pytestmark = pytest.mark.timeout(120)
OUTAGE_S = 3.0  # how long Redis is down under submissions


def _serve(tmp_path: Path, redis: test_redis_support.RedisServer, size: int = 2, replica: str = "") -> Server:
    """A server on `redis`; `replica` is its GREENPOOL_REPLICA_ID (a restart with the same id recovers the
    attempts its previous process ran at once, rather than when their leases lapse)."""
    env = {"GREENPOOL_STORE": redis.url, "GREENPOOL_POOL_SIZE": str(size), "GREENPOOL_REPLICA_ID": replica}
    return start_server(tmp_path, env)


@pytest.fixture
def redis(tmp_path: Path):
    """A redis-server of its own, with an AOF fsynced at every write (what survives its SIGKILL)."""
    server = test_redis_support.RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.stop()


def test_the_api_on_redis_and_what_a_restart_on_the_same_redis_keeps(tmp_path: Path, redis) -> None:
    server = _serve(tmp_path, redis, replica="solo")
    key = {"Idempotency-Key": "redis-1"}
    try:
        original = server.post("/v1/jobs", json={"task": "echo", "args": {"k": 1}}, headers=key)
        assert original.status_code == 202, original.text
        job = server.get(f"/v1/jobs/{original.json()['id']}", params={"wait": 5}).json()  # a long-poll
        assert job["status"] == "succeeded" and job["result"] == {"k": 1}, job
        pile = server.post("/v1/piles", json={"open": True, "jobs": [{"task": "echo", "args": {"n": n}}
                                                                     for n in range(FIRST)]}).json()  # fmt: skip
        assert _until(server, f"/v1/piles/{pile['id']}", lambda s: s["done"] == FIRST)["done"] == FIRST
        assert server.patch("/v1/pool", json={"size": 1}).status_code == 200
        add = [{"task": "sleep", "args": {"seconds": 60}}] + [{"task": "echo", "args": {"m": m}} for m in range(LATER)]
        added = server.post(f"/v1/piles/{pile['id']}/jobs", json={"jobs": add})
        assert added.status_code == 202, added.text
        sleeper = added.json()["added"][0]["job_id"]
        assert _until(server, f"/v1/jobs/{sleeper}", lambda j: j["status"] == "running")["status"] == "running"
        assert server.get("/v1/pool").json()["queued"] == LATER  # the echo jobs wait behind the sleeper
        assert server.post(f"/v1/piles/{pile['id']}/close").status_code == 200
        with _stream(server, pile["id"]) as resp:
            before = [event for _, event in zip(range(HALF), _events(resp), strict=False)]
        assert [int(i) for i, _, _ in before] == list(range(HALF)), before
    finally:
        server.kill()  # SIGKILL to master and worker
        server.stop()

    again = _serve(tmp_path, redis, replica="solo")
    try:
        assert again.get(f"/v1/jobs/{original.json()['id']}").json()["result"] == {"k": 1}
        summary = assert_kept(again, original.json()["id"], key, pile["id"], before[-1][0], sleeper)
        assert summary["succeeded"] == FIRST + LATER  # the queued echo jobs ran after the restart
    finally:
        again.stop()


def test_a_job_submitted_on_one_server_is_read_on_another(tmp_path: Path, redis) -> None:
    a, b = _serve(tmp_path, redis), _serve(tmp_path, redis)
    try:
        ids = [a.post("/v1/jobs", json={"task": "echo", "args": {"n": n}}).json()["id"] for n in range(5)]
        for job_id in ids:
            seen = _until(b, f"/v1/jobs/{job_id}", lambda j: j["status"] == "succeeded")
            assert seen["id"] == job_id and seen["status"] == "succeeded", seen
        slow = b.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 0.5}}).json()["id"]
        assert _until(a, f"/v1/jobs/{slow}", lambda j: j["status"] == "succeeded")["status"] == "succeeded"
        assert a.get("/v1/jobs", params={"limit": 10}).json()["jobs"][0]["id"] == slow  # one list for both
    finally:
        a.stop()
        b.stop()


def test_redis_down_under_submissions_is_503_with_retry_after_and_loses_nothing(tmp_path: Path, redis) -> None:
    server = _serve(tmp_path, redis)
    accepted: list[str] = []
    statuses: list[int] = []
    retry_after: set[str | None] = set()
    stop = threading.Event()

    def submit() -> None:
        n = 0
        while not stop.is_set() and n < 5000:
            n += 1
            resp = server.post("/v1/jobs", json={"task": "echo", "args": {"n": n}})
            statuses.append(resp.status_code)
            if resp.status_code == 202:
                accepted.append(resp.json()["id"])
            elif resp.status_code == 503:
                retry_after.add(resp.headers.get("Retry-After"))
                assert resp.json()["type"].endswith("store-unavailable"), resp.text
                time.sleep(0.02)

    thread = threading.Thread(target=submit)
    try:
        thread.start()
        time.sleep(1.0)
        running = server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 1.5}}).json()["id"]
        assert _until(server, f"/v1/jobs/{running}", lambda j: j["status"] == "running")["status"] == "running"
        redis.kill()
        time.sleep(OUTAGE_S)
        down = len(statuses)
        redis.start()
        deadline = time.monotonic() + 20
        while statuses[-1:] != [202] and time.monotonic() < deadline:  # the service resumes by itself
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
    try:
        assert 500 not in statuses and set(statuses) <= {202, 503}, sorted(set(statuses))
        assert 503 in statuses[:down] and retry_after == {"5"}, retry_after
        assert statuses[-1] == 202, statuses[-20:]
        for job_id in accepted:  # every acknowledged job is found
            assert server.get(f"/v1/jobs/{job_id}").status_code == 200, job_id
        # it ended while Redis was down: its outcome was held and written once Redis was back
        assert _until(server, f"/v1/jobs/{running}", lambda j: j["status"] != "running")["status"] == "succeeded"
    finally:
        server.stop()


def test_timers_on_redis_a_delayed_job_starts_and_a_timeout_ends_a_job(tmp_path: Path, redis) -> None:
    """What a hub timer starts (a delay that is due, a timeout) does its Redis I/O in a green thread."""
    server = _serve(tmp_path, redis)
    try:
        delayed = server.post("/v1/jobs", json={"task": "echo", "args": {"d": 1}, "delay": 0.3}).json()["id"]
        slow = server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 30}, "timeout": 0.3}).json()["id"]
        assert _until(server, f"/v1/jobs/{delayed}", lambda j: j["status"] == "succeeded")["status"] == "succeeded"
        ended = _until(server, f"/v1/jobs/{slow}", lambda j: j["status"] == "timed_out")
        assert ended["status"] == "timed_out", ended
        assert server.post("/v1/jobs", json={"task": "echo", "args": {}}).status_code == 202  # still serving
    finally:
        server.stop()

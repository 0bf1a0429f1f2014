"""Slots and the queue against a real server: cancel (queued and running), per-job timeouts, blocking tasks,
the bounded queue (429 + Retry-After), and resizing the pool at runtime, all observed through `/v1/pool`."""

from __future__ import annotations

import time

import pytest
from api_support import PROBLEM_JSON, Server, ServerFactory, assert_problem, error_fields

pytestmark = pytest.mark.timeout(60)


def wait_status(server: Server, job_id: str, status: str, timeout: float = 5.0) -> dict:
    """Poll a job until it reaches a non-terminal `status` (bounded); long-polls only wait for the end."""
    deadline = time.monotonic() + timeout
    job = server.job(job_id)
    for _ in range(500):
        if job["status"] == status or time.monotonic() > deadline:
            break
        time.sleep(0.01)
        job = server.job(job_id)
    assert job["status"] == status, job
    return job


@pytest.fixture(scope="module")
def one(module_server_factory: ServerFactory) -> Server:
    """A server with a pool of one slot: whatever runs holds the only slot."""
    # debug: the job log's queued and running lines too
    return module_server_factory.start(env={"GREENPOOL_POOL_SIZE": "1", "GREENPOOL_LOG_LEVEL": "debug"})


# -- cancel ------------------------------------------------------------------------------------------
def test_cancel_queued_job_never_starts_and_running_job_is_killed(one: Server) -> None:
    runner = one.submit("sleep", {"seconds": 30})
    wait_status(one, runner["id"], "running")
    queued = one.submit("echo", {"never": "runs"})
    assert one.job(queued["id"])["status"] == "queued"
    stats = one.pool()
    assert (stats["running"], stats["free"], stats["queued"]) == (1, 0, 1), stats

    resp = one.delete(f"/v1/jobs/{queued['id']}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "cancelled" and body["started_at"] is None and body["finished_at"] is not None
    assert one.pool()["queued"] == 0

    resp = one.delete(f"/v1/jobs/{runner['id']}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "cancelled" and body["started_at"] is not None
    stats = one.pool_until(lambda s: s["running"] == 0, what="running == 0 after the cancel")
    assert stats["free"] == 1 and stats["cancelled"] >= 2

    # The slot is free again: the next job runs at once, and the cancelled queued job still never started.
    after = one.submit("echo", {"after": 1}, wait=5)
    assert after["status"] == "succeeded"
    again = one.job(queued["id"])
    assert again["status"] == "cancelled" and again["started_at"] is None and again["result"] is None
    events = one.job_events(ended=(queued["id"], runner["id"]))
    assert events[queued["id"]] == ["queued", "cancelled"]
    assert events[runner["id"]] == ["queued", "running", "cancelled"]


def test_job_timeout_ends_timed_out_and_frees_the_slot(one: Server) -> None:
    t0 = time.monotonic()
    job = one.submit("sleep", {"seconds": 30}, timeout=0.5)
    behind = one.submit("echo", {"behind": True})  # queued behind it: runs only if the slot frees
    done = one.job(job["id"], wait=10)
    assert done["status"] == "timed_out", done
    assert done["error"]["type"] and "timeout" in done["error"]["message"].lower()
    assert done["result"] is None
    assert 0.4 <= time.monotonic() - t0 < 5
    assert one.job(behind["id"], wait=5)["status"] == "succeeded"
    stats = one.pool_until(lambda s: s["running"] == 0, what="running == 0 after the timeout")
    assert stats["timed_out"] >= 1 and stats["free"] == 1


def test_job_that_ends_before_its_timeout_succeeds(one: Server) -> None:
    job = one.submit("sleep", {"seconds": 0.1}, timeout=5, wait=5)
    assert job["status"] == "succeeded" and job["timeout"] == 5


def test_blocking_task_runs_off_the_hub(one: Server) -> None:
    """A blocking=True plugin task (time.sleep) holds its slot but not the hub: /v1/pool answers meanwhile."""
    job = one.submit("api_block", {"seconds": 1.0})
    wait_status(one, job["id"], "running")
    latencies = []
    for _ in range(5):
        t0 = time.monotonic()
        stats = one.pool()
        latencies.append(time.monotonic() - t0)
        assert stats["running"] == 1
    assert max(latencies) < 0.3, latencies
    done = one.job(job["id"], wait=10)
    assert done["status"] == "succeeded" and done["result"] == 1.0


def test_a_bare_plugin_task_that_sleeps_5_s_leaves_healthz_fast(one: Server) -> None:
    """A plugin task under a bare @task calling time.sleep(5) runs on an OS thread: /healthz answers in < 100 ms
    all the while (issue #16 point 1)."""
    job = one.submit("careless_sleep", {"seconds": 5.0})
    wait_status(one, job["id"], "running")
    latencies, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 4.0 and len(latencies) < 400:  # bounded: at most 4 s and 400 requests
        start = time.monotonic()
        assert one.get("/healthz").status_code == 200
        latencies.append(time.monotonic() - start)
        time.sleep(0.01)
    assert one.job(job["id"])["status"] == "running", "the job ended early: the check did not overlap it"
    assert max(latencies) < 0.1, sorted(latencies)[-5:]
    done = one.job(job["id"], wait=10)
    assert done["status"] == "succeeded" and done["result"] == 5.0


def test_a_timed_out_blocking_job_holds_its_slot_until_its_thread_returns(one: Server) -> None:
    t0 = time.monotonic()
    job = one.submit("api_block", {"seconds": 3.0}, timeout=0.5)
    done = one.job(job["id"], wait=10)
    assert done["status"] == "timed_out" and time.monotonic() - t0 < 2.0, done
    stats = one.pool()
    assert (stats["held"], stats["running"], stats["free"]) == (1, 1, 0), stats
    nxt = one.submit("echo", {}, wait=10)  # waits for the thread (about 3 s after the first job started)
    assert nxt["status"] == "succeeded" and time.monotonic() - t0 >= 2.5, nxt
    assert one.pool()["held"] == 0


def test_failing_plugin_task_frees_the_slot(one: Server) -> None:
    failed = one.submit("fail", {"message": "nope"}, wait=5)
    assert failed["status"] == "failed" and failed["error"] == {"type": "ValueError", "message": "nope"}
    assert one.submit("echo", {}, wait=5)["status"] == "succeeded"


# -- the bounded queue -------------------------------------------------------------------------------
def test_queue_full_429_with_retry_after(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        env={"GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": "3", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "3"}
    )
    jobs = [server.submit("echo", {"i": i}) for i in range(3)]
    assert all(j["status"] == "queued" for j in jobs)
    stats = server.pool()
    assert (stats["size"], stats["running"], stats["queued"]) == (0, 0, 3), stats

    resp = server.post("/v1/jobs", json={"task": "echo", "args": {"i": 3}})
    problem = assert_problem(resp, 429)
    retry_after = resp.headers.get("Retry-After", "")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60, resp.headers
    assert "Location" not in resp.headers
    assert server.pool()["submitted"] == 3 and server.pool()["queued"] == 3
    assert problem["type"].endswith("queue-full")

    # ?wait on a job that cannot start answers 202 once the wait is over, status queued
    assert server.delete(f"/v1/jobs/{jobs[0]['id']}").status_code == 200
    resp = server.post("/v1/jobs", params={"wait": 0.2}, json={"task": "echo", "args": {"i": 4}})
    assert resp.status_code == 202 and resp.json()["status"] == "queued", resp.text
    assert_problem(server.post("/v1/jobs", json={"task": "echo", "args": {"i": 5}}), 429)

    # opening the pool drains the queue; then submissions are accepted again
    assert server.patch("/v1/pool", json={"size": 2}).status_code == 200
    for job in [*jobs[1:], resp.json()]:
        assert server.job(job["id"], wait=5)["status"] == "succeeded"
    assert server.submit("echo", {}, wait=5)["status"] == "succeeded"
    assert server.job(jobs[0]["id"])["started_at"] is None


# -- resizing ----------------------------------------------------------------------------------------
def test_resize_up_down_and_to_zero_while_jobs_run(server_factory: ServerFactory) -> None:
    server = server_factory.start(env={"GREENPOOL_POOL_SIZE": "2"})
    ids = [server.submit("sleep", {"seconds": 30})["id"] for _ in range(6)]
    stats = server.pool_until(lambda s: s["running"] == 2 and s["queued"] == 4, what="running 2, queued 4")
    assert stats["size"] == 2 and stats["free"] == 0
    assert stats["waiting"] <= 1  # at most the dispatcher, parked until a slot is free

    # to 0: running jobs continue, free goes negative, nothing new starts
    resp = server.patch("/v1/pool", json={"size": 0})
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    assert (stats["size"], stats["running"], stats["free"]) == (0, 2, -2), stats
    new = server.submit("sleep", {"seconds": 30})["id"]
    ids.append(new)
    stats = server.pool()
    assert (stats["running"], stats["free"], stats["queued"]) == (2, -2, 5), stats
    # a running job ending does not let a queued one start while the size is 0
    assert server.delete(f"/v1/jobs/{ids[0]}").status_code == 200
    stats = server.pool_until(lambda s: s["running"] == 1, what="running 1")
    assert (stats["free"], stats["queued"]) == (-1, 5), stats
    assert server.job(new)["status"] == "queued"

    # up to 10: every queued job starts
    resp = server.patch("/v1/pool", json={"size": 10})
    assert resp.status_code == 200 and resp.json()["size"] == 10, resp.text
    stats = server.pool_until(lambda s: s["running"] == 6 and s["queued"] == 0, what="running 6, queued 0")
    assert (stats["free"], stats["waiting"]) == (4, 0), stats
    assert all(server.job(i)["status"] == "running" for i in ids[1:])

    # down to 3 while 6 run: they all continue, free is -3
    stats = server.patch("/v1/pool", json={"size": 3}).json()
    assert (stats["size"], stats["running"], stats["free"]) == (3, 6, -3), stats
    # back down to what runs finishing: cancel 4 -> 2 running, 1 free
    for job_id in ids[1:5]:
        assert server.delete(f"/v1/jobs/{job_id}").status_code == 200
    stats = server.pool_until(lambda s: s["running"] == 2, what="running 2")
    assert stats["free"] == 1, stats
    for job_id in ids[5:]:
        assert server.delete(f"/v1/jobs/{job_id}").status_code == 200
    stats = server.pool_until(lambda s: s["running"] == 0, what="running 0")
    assert stats["cancelled"] == 7 and stats["submitted"] == 7


@pytest.mark.parametrize(
    "body, fields",
    [
        ({}, ["size"]),
        ({"size": -1}, ["size"]),
        ({"size": "3"}, ["size"]),
        ({"size": 2.5}, ["size"]),
        ({"size": True}, ["size"]),
        ({"size": None}, ["size"]),
        ({"size": 10**9}, ["size"]),
        ({"size": 3, "extra": 1}, ["extra"]),
    ],
)
def test_resize_bad_body_422(one: Server, body: dict, fields: list[str]) -> None:
    problem = assert_problem(one.patch("/v1/pool", json=body), 422)
    assert error_fields(problem) == fields, problem
    assert one.pool()["size"] == 1


def test_resize_malformed_400_and_wrong_type_415(one: Server) -> None:
    assert_problem(one.patch("/v1/pool", data=b'{"size": ', headers={"Content-Type": "application/json"}), 400)
    resp = one.patch("/v1/pool", data=b'{"size": 2}', headers={"Content-Type": "text/plain"})
    assert_problem(resp, 415)
    resp = one.patch("/v1/pool", data=b"[2]", headers={"Content-Type": "application/json"})
    assert_problem(resp, 422)
    assert resp.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert one.pool()["size"] == 1


def test_pool_stats_shape(one: Server) -> None:
    stats = one.pool()
    keys = {"size", "running", "free", "waiting", "queued", "submitted", "succeeded", "failed", "cancelled",
            "timed_out", "uptime_s", "boot_id", "started_at"}  # fmt: skip
    assert keys <= set(stats), stats
    assert stats["free"] == stats["size"] - stats["running"]
    assert stats["uptime_s"] > 0

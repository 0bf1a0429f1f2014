"""Cluster mode with real servers (issue 15's acceptance): two or three gunicorn replicas on one redis-server,
each answering for the whole cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import Server, Servers
from test_redis_support import RedisServer

from service.storage.redis import connect

pytestmark = pytest.mark.timeout(60)

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., list[Server]]]:
    """`start(n, **env)`: n replicas A, B, C… on the module's redis-server (emptied first), plugin tasks loaded."""
    client = connect(redis_server.url)
    client.flushall()
    client.close()
    servers = Servers(tmp_path)

    def start(n: int, **env: str) -> list[Server]:
        settings = {"GREENPOOL_STORE": redis_server.url, "GREENPOOL_PLUGINS": "tests.plugins.tasks", **env}
        return [servers.start({**settings, "GREENPOOL_REPLICA_ID": "ABC"[i]}) for i in range(n)]

    yield start
    servers.close()


def until(condition: Callable[[], Any], timeout: float, step: float = 0.05) -> float:
    """Poll `condition()` until true; the seconds it took (fails after `timeout`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(step)
    return time.monotonic() - start


def submit(server: Server, task: str, args: dict, **fields: Any) -> dict:
    response = server.post("/v1/jobs", json={"task": task, "args": args, **fields})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_job_submitted_on_a_is_read_long_polled_and_cancelled_on_b(cluster):
    a, b = cluster(2)
    job = submit(a, "sleep", {"seconds": 0.3})
    assert b.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    start = time.monotonic()
    done = b.get(f"/v1/jobs/{job['id']}", params={"wait": 5}).json()
    assert done["status"] == "succeeded" and time.monotonic() - start < 1.5
    long = submit(a, "sleep", {"seconds": 30})
    until(lambda: b.get(f"/v1/jobs/{long['id']}").json()["status"] == "running", 5)
    start = time.monotonic()
    cancelled = b.delete(f"/v1/jobs/{long['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert until(lambda: a.get("/v1/pool").json()["running"] == 0, 1.5) < 1.0  # killed where it ran, lease freed
    assert a.get(f"/v1/jobs/{long['id']}").json()["status"] == "cancelled"
    assert b.delete(f"/v1/jobs/{long['id']}").status_code == 409


def test_a_pile_created_on_a_streams_on_b_and_sse_resumes_on_b_from_last_event_id(cluster):
    a, b = cluster(2)
    items = [{"seconds": 0.05 * i} for i in range(8)]
    pile = a.post("/v1/piles", json={"task": "sleep", "items": items}).json()
    lines = b.get(f"/v1/piles/{pile['id']}/results", timeout=10).text.splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == list(range(8))
    pile = a.post("/v1/piles", json={"task": "sleep", "items": [{"seconds": 0.1 * i} for i in range(10)]}).json()
    path = f"/v1/piles/{pile['id']}/results"
    seen = []
    with a.get(path, headers={"Accept": "text/event-stream"}, stream=True, timeout=10) as first:
        for line in first.iter_lines(decode_unicode=True):
            if line.startswith("id:"):
                seen.append(int(line[3:]))
                if len(seen) == 3:
                    break  # the connection is cut here
    rest = b.get(path, headers={"Accept": "text/event-stream", "Last-Event-ID": str(seen[-1])}, timeout=10)
    seen += [int(line[3:]) for line in rest.text.splitlines() if line.startswith("id:")]
    assert seen == list(range(10)), seen  # no gap, no duplicate


def test_pool_of_ten_over_three_replicas_never_runs_more_than_ten_and_a_resize_reaches_all_within_a_second(
    cluster, tmp_path: Path
):
    a, b, c = cluster(3, GREENPOOL_POOL_SIZE="10")
    spans = tmp_path / "spans.txt"
    spans.touch()
    start = time.monotonic()
    for server in (a, b, c):  # submitted to every replica, one pile each
        count = 67 if server is not c else 66
        items = [{"path": str(spans), "seconds": 0.2}] * count
        assert server.post("/v1/piles", json={"task": "span", "items": items}).status_code == 201
    until(lambda: len(spans.read_text().splitlines()) == 200, 20)
    elapsed = time.monotonic() - start
    times = [tuple(map(float, line.split())) for line in spans.read_text().splitlines()]
    events = sorted([(s, 1) for s, _ in times] + [(e, -1) for _, e in times])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 10, f"{peak} jobs ran at once"
    assert peak >= 8  # the cluster did run near its size
    assert max(e for _, e in times) - min(s for s, _ in times) >= 4.0 * 0.98
    assert elapsed < 12, f"{elapsed:.1f} s for 200 jobs of 0.2 s on 10 slots (ideal 4 s)"
    started = time.monotonic()
    assert b.patch("/v1/pool", json={"size": 7}).json()["size"] == 7
    for server in (a, c):
        until(lambda server=server: server.get("/v1/pool").json()["size"] == 7, 1.0)
    assert time.monotonic() - started < 1.0
    assert [r["id"] for r in a.get("/v1/pool").json()["replicas"]] == ["A", "B", "C"]
    until(lambda: a.get("/v1/pool").json()["succeeded"] == 200, 2.0)  # the others' counters: their last heartbeat
    assert a.get("/v1/pool").json()["running"] == 0
    print(f"200 jobs of 0.2 s on 10 slots over 3 replicas: {elapsed:.2f} s, peak {peak}")


def test_kill_9_of_a_replica_ends_its_jobs_worker_lost_within_the_lease_and_frees_their_slots(cluster):
    lease = 2.0
    servers = cluster(3, GREENPOOL_POOL_SIZE="6", GREENPOOL_LEASE=str(lease))
    jobs = [submit(servers[i % 3], "sleep", {"seconds": 30}) for i in range(6)]
    until(lambda: servers[0].get("/v1/pool").json()["running"] == 6, 5)
    until(lambda: len(servers[0].get("/v1/pool").json()["replicas"]) == 3, 3)
    by_replica = {r["id"]: r["running"] for r in servers[0].get("/v1/pool").json()["replicas"]}
    victim = max(by_replica, key=by_replica.__getitem__)
    lost = by_replica[victim]
    doomed = servers["ABC".index(victim)]
    survivors = [s for s in servers if s is not doomed]
    doomed.kill()
    killed_at = time.monotonic()
    ended = lambda: [j for j in jobs if survivors[0].get(f"/v1/jobs/{j['id']}").json()["status"] in TERMINAL]  # noqa: E731
    until(lambda: len(ended()) == lost, lease + 5)
    assert time.monotonic() - killed_at <= lease + 5
    for job in ended():
        record = survivors[1].get(f"/v1/jobs/{job['id']}").json()
        assert record["status"] == "failed" and record["error"]["type"] == "WorkerLost", record
    until(lambda: len(survivors[0].get("/v1/pool").json()["replicas"]) == 2, lease + 2)
    report = survivors[1].get("/v1/pool").json()
    assert report["running"] == 6 - lost == sum(r["running"] for r in report["replicas"])
    for job in jobs:
        survivors[0].delete(f"/v1/jobs/{job['id']}")


def test_idempotent_submissions_to_two_replicas_with_one_key_create_one_job(cluster):
    a, b = cluster(2)
    body = {"task": "echo", "args": {"n": 1}}
    first = a.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    second = b.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and second.status_code in (200, 202)
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    listed = b.get("/v1/jobs").json()
    assert [job["id"] for job in listed["jobs"]] == [first.json()["id"]]


def test_metrics_of_each_replica_are_labelled_with_its_id(cluster):
    a, b = cluster(2)
    for server, name in ((a, "A"), (b, "B")):
        text = server.get("/metrics").text
        assert f'greenpool_pool_size{{pool="default",replica="{name}"}}' in text


def test_redis_stopped_for_five_seconds_under_load_answers_503_loses_nothing_and_resumes(tmp_path: Path):
    redis = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()  # what survives a kill
    servers = Servers(tmp_path)
    try:
        settings = {"GREENPOOL_STORE": redis.url, "GREENPOOL_POOL_SIZE": "4", "GREENPOOL_LEASE": "2"}
        a, b = (servers.start({**settings, "GREENPOOL_REPLICA_ID": name}) for name in "AB")
        accepted = [submit((a, b)[i % 2], "sleep", {"seconds": 0.3})["id"] for i in range(12)]
        redis.kill()
        statuses = set()
        outage = time.monotonic()
        while time.monotonic() - outage < 5:  # bounded: 5 s of submissions while Redis is down
            for server in (a, b):
                response = server.post("/v1/jobs", json={"task": "echo", "args": {}}, timeout=10)
                statuses.add(response.status_code)
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                else:
                    assert response.status_code == 503 and response.headers.get("Retry-After"), response.text
            time.sleep(0.2)
        assert 503 in statuses and 500 not in statuses, statuses
        redis.start()
        until(lambda: a.post("/v1/jobs", json={"task": "echo", "args": {}}).status_code == 202, 10)
        for job_id in accepted:  # every accepted job is there and ends: run, or lost with its lease (WorkerLost)
            job = until_ended(b, job_id, 15)
            assert job["status"] == "succeeded" or job["error"]["type"] == "WorkerLost", job
        fresh = submit(b, "sleep", {"seconds": 0.1})
        assert a.get(f"/v1/jobs/{fresh['id']}", params={"wait": 5}).json()["status"] == "succeeded"
    finally:
        servers.close()
        redis.stop()


def until_ended(server: Server, job_id: str, timeout: float) -> dict:
    """The job once it has ended (long-polls; fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.get(f"/v1/jobs/{job_id}", params={"wait": 2}).json()
        if job.get("status") in TERMINAL:
            return job
    raise AssertionError(f"job {job_id} did not end within {timeout} s")

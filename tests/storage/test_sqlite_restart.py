"""The SQLite store behind a real server: every job that got a 202 (or was in a pile that got a 201) is
still there after `kill -9` of the gunicorn master and its worker and a restart on the same file; a job
that was running at the kill ends `failed` with `WorkerLost`, and the queued ones run after the restart.
The mid-flight test (4 threads submitting when the kill comes) loses a job about one run in three when the
flush before the 202 is taken out. When only the worker is killed, gunicorn's new worker recovers the same way."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serverkit import Server, start_server

pytestmark = pytest.mark.timeout(90)
THREADS, PER_THREAD = 4, 25
BURST_S, BURST_MAX = 1.0, 2000  # the mid-flight test: submitting for this long, at most this many per thread


def _serve(tmp_path: Path, db: Path) -> Server:
    return start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_POOL_SIZE": "2"})


def _submit(server: Server, count: int) -> list[str]:
    """POST `count` echo jobs; the ids of those acknowledged with 202."""
    ids = []
    for n in range(count):
        resp = server.post("/v1/jobs", json={"task": "echo", "args": {"n": n}})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def _wait_status(server: Server, job_id: str, status: str, within: float = 20.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        job = server.get(f"/v1/jobs/{job_id}", params={"wait": 1}).json()
        if job["status"] == status or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_acknowledged_jobs_survive_kill_9_of_master_and_worker(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = _serve(tmp_path, db)
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            done = [i for ids in pool.map(lambda _: _submit(server, PER_THREAD), range(THREADS)) for i in ids]
        for job_id in done:
            assert _wait_status(server, job_id, "succeeded")["status"] == "succeeded"
        sleepers = [server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 60}}).json()["id"]
                    for _ in range(2)]  # fmt: skip
        for job_id in sleepers:
            assert _wait_status(server, job_id, "running")["status"] == "running"
        queued = _submit(server, 10)  # both slots are taken: these stay queued
        pile = server.post("/v1/piles", json={"jobs": [{"task": "echo", "args": {"p": n}} for n in range(3)]})
        assert pile.status_code == 201, pile.text
        assert server.get("/v1/pool").json()["queued"] == 13
    finally:
        server.kill()  # SIGKILL to the master and the worker, with nothing flushed on the way out
        server.stop()

    again = _serve(tmp_path, db)
    try:
        for job_id in done:
            resp = again.get(f"/v1/jobs/{job_id}")
            assert resp.status_code == 200 and resp.json()["status"] == "succeeded", resp.text
        for job_id in sleepers:
            job = again.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] == "failed" and job["error"]["type"] == "WorkerLost", job
        metrics = _samples(again)  # recovery's ends are counted, and as submitted to this process
        finished = ("greenpool_jobs_finished_total", (("pool", "default"), ("status", "failed"), ("task", "sleep")))
        assert metrics[finished] == 2, metrics
        assert metrics[("greenpool_jobs_submitted_total", (("pool", "default"), ("task", "sleep")))] == 2, metrics
        for job_id in queued:
            job = _wait_status(again, job_id, "succeeded")
            assert job["status"] == "succeeded", job
        pile_id = pile.json()["id"]
        deadline = time.monotonic() + 20
        while (summary := again.get(f"/v1/piles/{pile_id}").json())["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert summary["pending"] == 0 and summary["size"] == 3, summary
    finally:
        again.stop()


def _samples(server: Server) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value, from the server's /metrics."""
    text = server.get("/metrics").text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}  # fmt: skip


def _submit_until(url: str, stop: threading.Event) -> list[str]:
    """POST echo jobs until `stop` or the server dies; the ids that got a 202 (each on its own session)."""
    ids: list[str] = []
    with requests.Session() as session:
        while not stop.is_set() and len(ids) < BURST_MAX:
            try:
                resp = session.post(url + "/v1/jobs", json={"task": "echo", "args": {"n": len(ids)}}, timeout=10)
            except requests.ConnectionError:
                break
            if resp.status_code == 202:
                ids.append(resp.json()["id"])
    return ids


def test_jobs_acknowledged_just_before_a_kill_9_are_found(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_POOL_SIZE": "0"})
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(_submit_until, server.url, stop) for _ in range(THREADS)]
            time.sleep(BURST_S)  # the load runs this long (not a synchronisation): then the kill, mid-flight
            server.kill()
            stop.set()
            acknowledged = [job_id for future in futures for job_id in future.result()]
    finally:
        server.stop()
    assert len(acknowledged) > 100
    again = _serve(tmp_path, db)
    try:
        missing = [i for i in acknowledged if again.get(f"/v1/jobs/{i}").status_code != 200]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged jobs were lost"
    finally:
        again.stop()


def _worker_pid(server: Server) -> int:
    """The pid of the gunicorn master's one worker process."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_worker_killed_alone_is_replaced_by_one_that_recovers_from_the_file(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{tmp_path / 'gp.db'}", "GREENPOOL_POOL_SIZE": "1"})
    try:
        sleeper = server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 60}}).json()["id"]
        assert _wait_status(server, sleeper, "running")["status"] == "running"
        queued = _submit(server, 5)
        worker = _worker_pid(server)
        os.kill(worker, signal.SIGKILL)
        job: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # gunicorn's master starts a new worker on the same file
            with contextlib.suppress(requests.ConnectionError):
                job = server.get(f"/v1/jobs/{sleeper}").json()
                if job["status"] == "failed":
                    break
            time.sleep(0.1)
        assert (job.get("error") or {}).get("type") == "WorkerLost" and _worker_pid(server) != worker, job
        for job_id in queued:
            assert _wait_status(server, job_id, "succeeded")["status"] == "succeeded"
    finally:
        server.stop()

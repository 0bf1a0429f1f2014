"""Named pools against a real server (issue #14): each pool's size bounds its own jobs, measured by the jobs
themselves (`pool_probe` returns how many of its kind ran when it started); one pool's full queue or resize
leaves the others alone; which pool a job runs in; and the `/v1/pools` routes' answers and roles."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime
from typing import Any

import pytest
import requests
from api_support import HTTP_TIMEOUT, Server, ServerFactory, assert_problem, error_fields

pytestmark = pytest.mark.timeout(90)

ADMIN_SECRET, SUBMIT_SECRET = "pools-admin-secret-0001", "pools-submit-secret-001"
ADMIN = {"Authorization": f"Bearer {ADMIN_SECRET}"}
SUBMITTER = {"Authorization": f"Bearer {SUBMIT_SECRET}"}


@pytest.fixture(scope="module")
def pools(module_server_factory: ServerFactory) -> Server:
    """A server with pools `small` (2), `big` (5), `probed` (3) and a paused `paused` (0) beside `default`."""
    return module_server_factory.start(env={"GREENPOOL_POOLS": "small:2,big:5,probed:3,paused:0",
                                            "GREENPOOL_MAX_QUEUED": "40", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "40"})


def pool(server: Server, name: str) -> dict:
    resp = server.get(f"/v1/pools/{name}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def pool_until(server: Server, name: str, predicate: Any, timeout: float = 5.0) -> dict:
    """Poll `/v1/pools/{name}` until `predicate(stats)` (bounded by `timeout` s); returns the stats."""
    deadline = time.monotonic() + timeout
    stats = pool(server, name)
    while not predicate(stats) and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = pool(server, name)
    assert predicate(stats), stats
    return stats


def put(server: Server, name: str, body: Any, headers: dict | None = None) -> requests.Response:
    return server.request("PUT", f"/v1/pools/{name}", json=body, headers=headers)


def map_results(server: Server, body: dict, out: list[dict]) -> None:
    """POST /v1/map and collect its NDJSON records into `out`."""
    resp = server.post("/v1/map", json=body, timeout=HTTP_TIMEOUT + 20)
    assert resp.status_code == 200, resp.text
    out.extend(json.loads(line) for line in resp.text.splitlines() if line)


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_two_pools_run_at_once_each_within_its_own_size(pools: Server) -> None:
    results: dict[str, list[dict]] = {"small": [], "big": []}
    maps = [threading.Thread(target=map_results, args=(pools, {
        "task": "pool_probe", "items": [{"key": f"both-{name}", "seconds": 0.3}] * count, "pool": name,
    }, results[name])) for name, count in (("small", 8), ("big", 20))]  # fmt: skip
    for thread in maps:
        thread.start()
    for thread in maps:
        thread.join(30)
    for name, size in (("small", 2), ("big", 5)):
        records = results[name]
        assert [r["status"] for r in records] == ["succeeded"] * len(records) and records, records
        assert max(r["result"]["running"] for r in records) == size, (name, records)
    small, big = results["small"], results["big"]
    # at once: big's jobs started before small's last one ended, and the other way round
    assert min(_at(r["started_at"]) for r in big) < max(_at(r["finished_at"]) for r in small)
    assert min(_at(r["started_at"]) for r in small) < max(_at(r["finished_at"]) for r in big)
    assert pool(pools, "small")["succeeded"] >= 8 and pool(pools, "big")["succeeded"] >= 20


def test_a_full_queue_in_one_pool_leaves_the_other_accepting_and_running(pools: Server) -> None:
    queued = [pools.submit("echo", {"n": i}, pool="paused") for i in range(40 - pool(pools, "paused")["queued"])]
    resp = pools.post("/v1/jobs", json={"task": "echo", "pool": "paused"})
    body = assert_problem(resp, 429)
    assert int(resp.headers["Retry-After"]) == body["retry_after"] >= 1
    job = pools.submit("pool_probe", {"key": "other"}, wait=10, pool="small")
    assert job["status"] == "succeeded" and job["pool"] == "small"
    assert pools.submit("echo", {}, wait=10)["status"] == "succeeded"  # and default too
    for q in queued:
        assert pools.delete(f"/v1/jobs/{q['id']}").status_code == 200
    assert pool(pools, "paused")["queued"] == 0


def test_resizing_one_pool_changes_nothing_in_the_other(pools: Server) -> None:
    held = pools.submit("pool_probe", {"key": "resize-hold", "seconds": 30}, pool="big")
    pool_until(pools, "big", lambda p: p["running"] == 1 and p["queued"] == 0)
    before = {name: pool(pools, name) for name in ("big", "small", "default")}
    jobs = [pools.submit("echo", {"n": i}, pool="paused") for i in range(3)]
    assert put(pools, "paused", {"size": 3}).status_code == 200  # growing starts its queued jobs at once
    for job in jobs:
        assert pools.job(job["id"], wait=10)["status"] == "succeeded"
    for name, was in before.items():
        now = pool(pools, name)
        same = ("size", "submitted", "succeeded", "failed", "cancelled", "queued")
        assert {k: now[k] for k in same} == {k: was[k] for k in same}, name
    assert pools.job(held["id"])["status"] == "running"
    assert put(pools, "paused", {"size": 0}).json()["size"] == 0
    pools.delete(f"/v1/jobs/{held['id']}")


def test_shrinking_a_pool_lets_its_running_jobs_finish_then_runs_at_the_new_size(pools: Server) -> None:
    first = [pools.submit("pool_probe", {"key": "shrink", "seconds": 0.5}, pool="big") for _ in range(5)]
    pool_until(pools, "big", lambda p: p["running"] == 5)
    later = [pools.submit("pool_probe", {"key": "shrink", "seconds": 0.1}, pool="big") for _ in range(3)]
    try:
        assert put(pools, "big", {"size": 1}).json()["free"] == -4  # the running five go on
        ended = [pools.job(job["id"], wait=10) for job in first + later]
    finally:
        assert put(pools, "big", {"size": 5}).status_code == 200
    assert [job["status"] for job in ended] == ["succeeded"] * 8
    assert [job["result"]["running"] for job in ended[5:]] == [1, 1, 1]  # one at a time after the shrink
    assert min(_at(j["started_at"]) for j in ended[5:]) >= max(_at(j["finished_at"]) for j in ended[:5])


def test_a_tasks_declared_pool_is_used_unless_the_job_names_another(pools: Server) -> None:
    assert pools.submit("pool_declared", {"key": "d1"}, wait=10)["pool"] == "probed"
    assert pools.submit("pool_declared", {"key": "d2"}, wait=10, pool="small")["pool"] == "small"
    assert pools.submit("echo", {}, wait=10)["pool"] == "default"
    resp = pools.post("/v1/piles", json={"jobs": [{"task": "pool_declared", "args": {"key": "d3"}},
                                                  {"task": "echo", "pool": "big"}]})  # fmt: skip
    assert resp.status_code == 201, resp.text
    listed = pools.get("/v1/jobs", params={"limit": 2}).json()["jobs"]
    assert sorted(job["pool"] for job in listed) == ["big", "probed"]


def test_an_unknown_pool_is_a_422_naming_pool(pools: Server) -> None:
    for path, body, field in [
        ("/v1/jobs", {"task": "echo", "pool": "nope"}, "pool"),
        ("/v1/piles", {"jobs": [{"task": "echo"}, {"task": "echo", "pool": "nope"}]}, "jobs[1].pool"),
        ("/v1/piles", {"task": "echo", "items": [{}], "pool": "nope"}, "items[0].pool"),
        ("/v1/map", {"task": "echo", "items": [{}], "pool": "nope"}, "items[0].pool"),
        ("/v1/jobs", {"task": "echo", "pool": "No Pool"}, "pool"),
    ]:
        assert error_fields(assert_problem(pools.post(path, json=body), 422)) == [field], (path, body)


def test_delete_busy_default_idle_then_gone(pools: Server) -> None:
    assert put(pools, "doomed", {"size": 0}).status_code == 201
    job = pools.submit("echo", {}, pool="doomed")
    busy = assert_problem(pools.delete("/v1/pools/doomed"), 409)
    assert (busy["queued"], busy["running"]) == (1, 0)
    assert_problem(pools.delete("/v1/pools/default"), 409)
    pools.delete(f"/v1/jobs/{job['id']}")
    assert pools.delete("/v1/pools/doomed").status_code == 204
    assert_problem(pools.delete("/v1/pools/doomed"), 404)
    assert_problem(pools.get("/v1/pools/doomed"), 404)
    assert "doomed" not in [p["name"] for p in pools.get("/v1/pools").json()["pools"]]


def test_put_with_a_bad_name_or_size_is_422(pools: Server) -> None:
    for name, body, fields in [("UPPER", {"size": 1}, ["name"]), ("a" * 65, {"size": 1}, ["name"]),
                               ("dot.ted", {"size": 1}, ["name"]), ("fine", {"size": -1}, ["size"]),
                               ("fine", {"size": "3"}, ["size"]), ("fine", {}, ["size"]),
                               ("fine", {"size": 1, "extra": 1}, ["extra"])]:  # fmt: skip
        assert error_fields(assert_problem(put(pools, name, body), 422)) == fields, (name, body)
    assert_problem(pools.get("/v1/pools/fine"), 404)


def test_pools_list_default_first_with_the_fields_of_v1_pool(pools: Server) -> None:
    listed = pools.get("/v1/pools").json()["pools"]
    assert [p["name"] for p in listed[:1]] == ["default"] and [p["name"] for p in listed[1:]] == sorted(
        p["name"] for p in listed[1:]
    )
    assert set(listed[0]) == set(pools.pool()) | {"name"}
    assert {p["name"]: p["size"] for p in listed if p["name"] in ("small", "big")} == {"small": 2, "big": 5}


def test_submit_tokens_cannot_create_resize_or_delete_pools(server_factory: ServerFactory) -> None:
    server = server_factory.start(env={"GREENPOOL_TOKENS": f"root:admin:{ADMIN_SECRET},sub:submit:{SUBMIT_SECRET}"})
    assert_problem(put(server, "db", {"size": 2}, SUBMITTER), 403)
    assert put(server, "db", {"size": 2}, ADMIN).status_code == 201
    assert_problem(put(server, "db", {"size": 3}, SUBMITTER), 403)
    assert_problem(server.delete("/v1/pools/db", headers=SUBMITTER), 403)
    assert server.get("/v1/pools/db", headers=SUBMITTER).json()["size"] == 2  # reading is open to submit
    assert server.delete("/v1/pools/db", headers=ADMIN).status_code == 204


def test_runtime_sizes_survive_a_restart_over_the_seeds(server_factory: ServerFactory, tmp_path) -> None:
    env = {"GREENPOOL_STORE": f"sqlite:{tmp_path / 'gp.db'}", "GREENPOOL_POOLS": "db:2"}
    first = server_factory.start(env=env)
    assert size_sources(first) == {"default": "GREENPOOL_POOL_SIZE", "db": "GREENPOOL_POOLS"}
    assert put(first, "db", {"size": 7}).status_code == 200 and put(first, "extra", {"size": 0}).status_code == 201
    job = first.submit("echo", {}, pool="extra")
    first.stop(signal.SIGKILL)  # a SIGTERM would cancel the queued job (the drain); a kill keeps it queued
    again = server_factory.start(env=env)
    assert (pool(again, "db")["size"], pool(again, "extra")["size"]) == (7, 0)
    assert again.job(job["id"])["status"] == "queued"  # back in its own (paused) pool
    assert put(again, "extra", {"size": 1}).status_code == 200
    assert again.job(job["id"], wait=10)["status"] == "succeeded"
    assert size_sources(again) == {"default": "store", "db": "store", "extra": "store"}


def size_sources(server: Server, timeout: float = 5.0) -> dict[str, str]:
    """pool -> where its size came from, as the start-up log says (info lines arrive up to 1 s late)."""
    deadline = time.monotonic() + timeout
    while True:
        sources = {r["pool"]: r["size_from"] for r in server.log_records() if r.get("msg") == "pool"}
        if "default" in sources or time.monotonic() > deadline:
            return sources
        time.sleep(0.1)  # polling a log file: there is no event to wait on

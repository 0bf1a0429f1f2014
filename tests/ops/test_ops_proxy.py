"""deploy/nginx.conf in front of two real replicas, run by Debian's nginx (package `nginx`; proxy_support.py
makes the local copy): the API answers through it with Authorization and Idempotency-Key passed on, greenpool's
own problem+json errors come back (nginx adds no body cap), long-polls outlast their wait, NDJSON and SSE
streams arrive unbuffered (a pile's first record long before its last sleeping job ends), `Last-Event-ID`
resumes, and requests are spread over both replicas and go to the survivor when one is gone.

With the Redis store (`GREENPOOL_STORE=redis://…`) both replicas share one real redis-server and the proxy
spreads every request over them; a job submitted through the proxy is then read on either replica directly.
Where that store is not available the replicas each keep memory records, so the requests that need shared
state go through a proxy in front of the first replica only (`pinned`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from ops_support import PLUGINS, OpsServer
from prometheus_client.parser import text_string_to_metric_families
from proxy_support import proxy_log, start_proxy
from serverkit import Server
from tools import needs

from service.config import Config, ConfigError

pytestmark = [needs("nginx"), pytest.mark.timeout(90)]

TOKEN = "Bearer proxy-secret-0123456789"
TOKENS = "proxy:admin:proxy-secret-0123456789"
SLEEPING = 4.0  # seconds the later jobs of the streamed piles sleep
#: `greenpool serve`'s keep-alive (GREENPOOL_KEEPALIVE, 5 s) for the gunicorn replicas (its own default is 2 s),
#: which deploy/nginx.conf's upstream keepalive_timeout (4 s) is below, as in a container
KEEPALIVE = ("--keep-alive", "5")


def redis_store_available() -> bool:
    """Whether this checkout's configuration accepts a `redis://` store (the Redis store is on main)."""
    try:
        Config(store="redis://127.0.0.1:6379/0").check()
    except ConfigError:
        return False
    return True


@dataclass
class Cluster:
    """Two replicas and a proxy in front of them (`pinned`: of the first one only, without a shared store)."""

    replicas: list[OpsServer]
    proxy: Server
    shared: bool
    directory: Path

    def failure_context(self) -> str:
        """nginx's error log, for assertion messages."""
        return "--- nginx error log ---\n" + proxy_log(self.directory)[-4000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two replicas (on one redis-server when the Redis store exists) behind deploy/nginx.conf's proxy."""
    directory = tmp_path_factory.mktemp("proxy")
    env = {"GREENPOOL_PLUGINS": PLUGINS, "GREENPOOL_TOKENS": TOKENS, "GREENPOOL_POOL_SIZE": "20"}
    redis_server = None
    shared = redis_store_available()
    if shared:
        from storage.test_redis_support import RedisServer  # a real redis-server, or a skip naming its package

        redis_server = RedisServer(directory).start()
        env["GREENPOOL_STORE"] = redis_server.url
    replicas: list[OpsServer] = []
    proxy = None
    try:
        replicas = [OpsServer.start(directory, env, KEEPALIVE) for _ in range(2)]
        upstreams = [f"127.0.0.1:{r.port}" for r in (replicas if shared else replicas[:1])]
        proxy = start_proxy(directory / "nginx", upstreams)
        proxy.session.headers["Authorization"] = TOKEN
        for replica in replicas:
            replica.session.headers["Authorization"] = TOKEN
        yield Cluster(replicas, proxy, shared, directory / "nginx")
    finally:
        for server in [proxy, *replicas]:
            if server is not None:
                server.stop()
        if redis_server is not None:
            redis_server.stop()


def test_the_api_answers_through_the_proxy(cluster: Cluster) -> None:
    """Submit, get, pool and a pile's summary through the proxy; Authorization passes (none: 401);
    greenpool's own problem+json comes back for a bad body and for one over its body limit."""
    proxy = cluster.proxy
    done = proxy.post("/v1/jobs", params={"wait": 5}, json={"task": "echo", "args": {"x": 1}})
    assert done.status_code == 200 and done.json()["result"] == {"x": 1}, done.text + cluster.failure_context()
    assert proxy.get(f"/v1/jobs/{done.json()['id']}").json()["status"] == "succeeded"

    pool = proxy.get("/v1/pool").json()
    assert {"size", "running", "queued", "submitted"} <= set(pool), pool
    pile = proxy.post("/v1/piles", json={"task": "echo", "items": [{"i": 1}, {"i": 2}]})
    assert pile.status_code == 201, pile.text
    assert proxy.get(pile.headers["Location"]).json()["size"] == 2

    assert requests.get(proxy.url + "/v1/pool", timeout=10).status_code == 401
    bad = proxy.post("/v1/jobs", json={"task": "echo", "args": "not an object"})
    assert bad.status_code == 422 and bad.headers["Content-Type"] == "application/problem+json", bad.text
    huge = proxy.post("/v1/jobs", data=b'{"task": "echo", "args": {"x": "' + b"x" * (2 << 20) + b'"}}',
                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert huge.status_code == 413 and huge.headers["Content-Type"] == "application/problem+json", huge.text[:300]


def test_a_long_poll_through_the_proxy_answers_when_the_job_ends(cluster: Cluster) -> None:
    """`GET /v1/jobs/{id}?wait=20` through the proxy answers once the job ends (1.5 s), not at its wait."""
    proxy = cluster.proxy
    if cluster.shared and "replicas" not in proxy.get("/v1/pool").json():
        pytest.skip("cross-replica wake-ups (the cluster runtime) are not in this checkout yet: a long-poll on "
                    "another replica than the job's answers only when its wait is over")  # fmt: skip
    started = time.monotonic()
    accepted = proxy.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 1.5}})
    assert accepted.status_code == 202 and accepted.headers["Location"] == f"/v1/jobs/{accepted.json()['id']}"
    polled = proxy.get(accepted.headers["Location"], params={"wait": 20}, timeout=30)
    assert polled.json()["status"] == "succeeded" and 1.4 <= time.monotonic() - started < 15


def test_an_idempotency_key_passes_through_the_proxy(cluster: Cluster) -> None:
    """Two submissions with one Idempotency-Key through the proxy make one job."""
    key = {"Idempotency-Key": f"proxy-{time.time_ns()}"}
    first = cluster.proxy.post("/v1/jobs", json={"task": "echo", "args": {"k": 1}}, headers=key)
    second = cluster.proxy.post("/v1/jobs", json={"task": "echo", "args": {"k": 1}}, headers=key)
    assert first.status_code in (200, 202) and second.status_code in (200, 202), first.text + second.text
    assert first.json()["id"] == second.json()["id"]


def sleeping_pile(cluster: Cluster) -> str:
    """A pile of one quick echo job and three that sleep SLEEPING s; its id."""
    jobs = [{"task": "echo", "args": {"first": True}}] + [
        {"task": "sleep", "args": {"seconds": SLEEPING}} for _ in range(3)
    ]
    resp = cluster.proxy.post("/v1/piles", json={"jobs": jobs})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_a_result_stream_is_not_buffered_by_the_proxy(cluster: Cluster, accept: str) -> None:
    """Through the proxy, the first record of a pile whose other jobs still sleep arrives at once (not when
    the pile ends), in chunks, and the stream ends with the pile."""
    pile_id = sleeping_pile(cluster)
    started = time.monotonic()
    with cluster.proxy.get(f"/v1/piles/{pile_id}/results", headers={"Accept": accept}, stream=True,
                           timeout=30) as resp:  # fmt: skip
        assert resp.status_code == 200 and resp.headers["Content-Type"] == accept
        assert resp.headers["Transfer-Encoding"] == "chunked"
        resp.encoding = "utf-8"  # NDJSON names no charset
        lines = resp.iter_lines(decode_unicode=True)
        first = next(line for line in lines if line.startswith(("{", "data: ")))
        first_at = time.monotonic() - started
        rest = list(lines)
        ended_at = time.monotonic() - started
    record = json.loads(first.removeprefix("data: "))
    assert record["result"] == {"first": True}, record
    assert first_at < SLEEPING / 2, f"the first record took {first_at:.2f} s\n{cluster.failure_context()}"
    assert ended_at >= SLEEPING * 0.9, f"the stream ended after {ended_at:.2f} s, before its jobs did"
    assert sum(line.startswith(("{", "data: ")) for line in rest) >= 3


def test_last_event_id_resumes_an_sse_stream_through_the_proxy(cluster: Cluster) -> None:
    """An SSE stream cut after a few events resumes through the proxy from Last-Event-ID: no gap, no
    duplicate."""
    resp = cluster.proxy.post("/v1/piles", json={"task": "echo", "items": [{"i": i} for i in range(20)]})
    url = f"/v1/piles/{resp.json()['id']}/results"
    sse = {"Accept": "text/event-stream"}
    seen: list[str] = []
    with cluster.proxy.get(url, headers=sse, stream=True, timeout=30) as first:
        for line in first.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                seen.append(line[4:])
            if len(seen) == 5:
                break
    with cluster.proxy.get(url, headers={**sse, "Last-Event-ID": seen[-1]}, stream=True, timeout=30) as rest:
        events = [line[4:] for line in rest.iter_lines(decode_unicode=True) if line.startswith("id: ")]
    results = [int(i) for i in seen + events][:20]
    assert results == list(range(20)), (seen, events)


def test_a_job_submitted_through_the_proxy_is_read_on_either_replica(cluster: Cluster) -> None:
    """With the Redis store, a job the proxy took to some replica is found on each replica directly."""
    if not cluster.shared:
        pytest.skip("the Redis store (GREENPOOL_STORE=redis://...) is not in this checkout yet")
    job = cluster.proxy.post("/v1/jobs", params={"wait": 5}, json={"task": "echo", "args": {"y": 2}}).json()
    for replica in cluster.replicas:
        assert replica.job(job["id"], wait=5)["result"] == {"y": 2}


def requests_served(replica: OpsServer, route: str) -> float:
    """The replica's own count of answered requests on `route` (its /metrics)."""
    text = replica.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "greenpool_http_requests_total" and sample.labels.get("route") == route)  # fmt: skip


def test_the_proxy_spreads_requests_and_skips_a_replica_that_is_gone(tmp_path: Path) -> None:
    """A proxy in front of both replicas sends requests to each; once one is stopped, every request still
    gets an answer, from the other."""
    env = {"GREENPOOL_POOL_SIZE": "4"}
    replicas = [OpsServer.start(tmp_path, env, KEEPALIVE) for _ in range(2)]
    proxy = start_proxy(tmp_path / "nginx", [f"127.0.0.1:{r.port}" for r in replicas])
    try:
        for _ in range(20):
            assert proxy.get("/v1/pool").status_code == 200
        assert all(requests_served(r, "/v1/pool") >= 3 for r in replicas), proxy_log(tmp_path / "nginx")
        replicas[1].stop()
        answers = [proxy.get("/v1/pool").status_code for _ in range(20)]
        assert answers == [200] * 20, answers
    finally:
        for server in [proxy, *replicas]:
            server.stop()

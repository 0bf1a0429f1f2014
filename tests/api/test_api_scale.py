"""One worker process under many connections: 1,000 concurrent long-polls, and 2,000 idle keep-alive
connections while `/v1/pool` must still answer in under 100 ms. Raw non-blocking sockets and one selector
hold the connections in the test process (no thread per connection)."""

from __future__ import annotations

import http.client
import statistics
import time

import pytest
from api_support import (
    ServerFactory,
    collect,
    open_conns,
    raise_nofile,
    raw_request,
    server_side_established,
)

LONG_POLLS = 1000
JOB_SECONDS = 1.5
IDLE = 2000


def wait_consumed(port: int, count: int, timeout: float) -> tuple[int, int]:
    """Until the server has read the requests of `count` connections (bounded); returns the last reading."""
    deadline = time.monotonic() + timeout
    seen = server_side_established(port)
    for _ in range(1000):
        if seen[1] >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        seen = server_side_established(port)
    return seen


@pytest.mark.timeout(60)
def test_one_worker_holds_1000_concurrent_long_polls(server_factory: ServerFactory) -> None:
    assert raise_nofile() >= LONG_POLLS + 200
    # Size 0: every job waits in the queue until the long-polls are all parked, then one resize starts them.
    server = server_factory.start(
        env={"GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": str(LONG_POLLS + 10),
             "GREENPOOL_MAX_QUEUED_PER_CLIENT": str(LONG_POLLS + 10)},
        args=["--worker-connections", "3000"],
    )
    t0 = time.monotonic()
    ids = [server.submit("sleep", {"seconds": JOB_SECONDS})["id"] for _ in range(LONG_POLLS)]
    submit_s = time.monotonic() - t0
    assert server.pool()["queued"] == LONG_POLLS

    conns = open_conns(server.address, LONG_POLLS, time.monotonic() + 20)
    try:
        for conn, job_id in zip(conns, ids, strict=True):
            conn.send(raw_request("GET", f"/v1/jobs/{job_id}?wait=30", server.url))
        total, consumed = wait_consumed(server.port, LONG_POLLS, 15)
        assert consumed >= LONG_POLLS, f"the server read only {consumed} of {LONG_POLLS} long-polls ({total})"
        collect(conns, 1, time.monotonic() + 0.3)
        early = [c.responses[0] for c in conns if c.responses]
        assert not early, f"{len(early)} long-polls answered before their job ran: {early[0]}"
        assert not any(c.closed for c in conns)

        # All 1,000 parked in one process; it still answers at once.
        t_pool = time.monotonic()
        stats = server.pool()
        assert time.monotonic() - t_pool < 0.5
        assert stats["queued"] == LONG_POLLS and stats["running"] == 0

        t_start = time.monotonic()
        resp = server.patch("/v1/pool", json={"size": LONG_POLLS})
        assert resp.status_code == 200, resp.text
        collect(conns, 1, time.monotonic() + 25)
        t_all = time.monotonic()

        missing = [job_id for c, job_id in zip(conns, ids, strict=True) if not c.responses]
        assert not missing, f"{len(missing)} long-polls got no answer (closed: {sum(c.closed for c in conns)})"
        for conn, job_id in zip(conns, ids, strict=True):
            answer = conn.responses[0]
            assert answer.status == 200, (answer.status, answer.body[:300])
            job = answer.json()
            assert job["id"] == job_id
            assert job["status"] == "succeeded", job
            assert job["result"] == {"slept": JOB_SECONDS}
            # it answered after the job ended, not before: no sooner than the sleep after the jobs started
            assert answer.at >= t_start + JOB_SECONDS - 0.05, answer.at - t_start
        arrivals = sorted(c.responses[0].at - t_start for c in conns)
        print(
            f"\n[long-poll] {LONG_POLLS} concurrent long-polls held by one worker; {LONG_POLLS} submits took "
            f"{submit_s:.2f}s; answers arrived {arrivals[0]:.3f}..{arrivals[-1]:.3f}s after the resize "
            f"(jobs sleep {JOB_SECONDS}s); all done {t_all - t_start:.2f}s after it"
        )
        stats = server.pool()
        assert stats["succeeded"] == LONG_POLLS and stats["running"] == 0
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.timeout(60)
def test_pool_answers_under_100ms_with_2000_idle_keepalive_connections(server_factory: ServerFactory) -> None:
    assert raise_nofile() >= IDLE + 200
    server = server_factory.start(args=["--worker-connections", "3000", "--keep-alive", "60"])
    conns = open_conns(server.address, IDLE, time.monotonic() + 20)
    try:
        request = raw_request("GET", "/healthz", server.url)
        for conn in conns:
            conn.send(request)
        collect(conns, 1, time.monotonic() + 20)
        answered = sum(1 for c in conns if c.responses and c.responses[0].status == 200)
        assert answered == IDLE, f"only {answered} of {IDLE} connections were served"
        assert not any(c.closed for c in conns)
        total, _ = server_side_established(server.port)
        assert total >= IDLE, f"only {total} server-side connections are established"

        # Now all 2,000 are idle keep-alive connections. Measure /v1/pool on a fresh connection.
        fresh = http.client.HTTPConnection(server.host, server.port, timeout=5)
        latencies = []
        try:
            for _ in range(20):
                t0 = time.perf_counter()
                fresh.request("GET", "/v1/pool")
                resp = fresh.getresponse()
                body = resp.read()
                latencies.append(time.perf_counter() - t0)
                assert resp.status == 200, body
        finally:
            fresh.close()
        # and with a new connection for each request (connect + request + response)
        connect_latencies = []
        for _ in range(20):
            t0 = time.perf_counter()
            one = http.client.HTTPConnection(server.host, server.port, timeout=5)
            try:
                one.request("GET", "/v1/pool")
                resp = one.getresponse()
                resp.read()
            finally:
                one.close()
            connect_latencies.append(time.perf_counter() - t0)
            assert resp.status == 200
        median = statistics.median(latencies)
        print(
            f"\n[idle] {IDLE} idle keep-alive connections: GET /v1/pool median {median * 1000:.2f} ms, "
            f"max {max(latencies) * 1000:.2f} ms (20 requests, one fresh connection); new connection each "
            f"time: median {statistics.median(connect_latencies) * 1000:.2f} ms, "
            f"max {max(connect_latencies) * 1000:.2f} ms"
        )
        assert median < 0.100, latencies
        assert statistics.median(connect_latencies) < 0.100, connect_latencies

        # The idle connections were really held open: each serves a second request.
        for conn in conns:
            conn.send(request)
        collect(conns, 2, time.monotonic() + 20)
        again = sum(1 for c in conns if len(c.responses) >= 2 and c.responses[1].status == 200)
        assert again == IDLE, f"only {again} of {IDLE} idle connections were still open"
    finally:
        for conn in conns:
            conn.close()

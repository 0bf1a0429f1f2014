"""SIGTERM drains (design.md §6), and the `greenpool serve` CLI path.

After SIGTERM the worker stops accepting and closes idle keep-alive connections, so the test speaks to the
draining server through connections that were busy when the signal came: each carries a long-poll on a
running job with a second request pipelined behind it, which the worker serves during the drain.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from api_support import (
    PROBLEM_JSON,
    ServerFactory,
    collect,
    free_port,
    open_conns,
    raw_request,
    server_side_established,
)
from serverkit import TERMINAL, run_cli

RUNNING = 100
QUEUED = 10
JOB_SECONDS = 4.0
GRACEFUL = 10  # gunicorn --graceful-timeout; the jobs end well within it


@pytest.mark.timeout(60)
def test_sigterm_drains_running_jobs_and_exits_0(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        env={  # debug: the job log's queued and running lines too
            "GREENPOOL_POOL_SIZE": str(RUNNING),
            "GREENPOOL_GRACEFUL_TIMEOUT": str(GRACEFUL),
            "GREENPOOL_LOG_LEVEL": "debug",
        },
        graceful_timeout=GRACEFUL,
    )
    t_submit = time.monotonic()
    running = [server.submit("sleep", {"seconds": JOB_SECONDS})["id"] for _ in range(RUNNING)]
    queued = [server.submit("echo", {"i": i})["id"] for i in range(QUEUED)]
    server.pool_until(lambda s: s["running"] == RUNNING and s["queued"] == QUEUED, what="100 running, 10 queued")
    assert server.get("/readyz").status_code == 200
    server.session.close()

    # One long-poll per job; the first two carry a pipelined /readyz and a pipelined submission.
    conns = open_conns(server.address, RUNNING + QUEUED, time.monotonic() + 10)
    host = server.url
    submit_body = json.dumps({"task": "echo", "args": {"late": True}}).encode()
    try:
        pipelined = {0: raw_request("GET", "/readyz", host), 1: raw_request("POST", "/v1/jobs", host, submit_body)}
        for i, (conn, job_id) in enumerate(zip(conns, running + queued, strict=True)):
            conn.send(raw_request("GET", f"/v1/jobs/{job_id}?wait=30", host) + pipelined.get(i, b""))
        # until the server has read the long-polls (a pipelined request may stay unread in the kernel until
        # the long-poll before it is answered, so its connection may not count)
        deadline = time.monotonic() + 2
        for _ in range(200):
            if server_side_established(server.port)[1] >= len(conns) - 2 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        # no long-poll may have been answered yet (the jobs have time left to run)
        collect(conns, 1, time.monotonic() + 0.1)
        early = [(i, c.responses[0].status, c.responses[0].body[:200]) for i, c in enumerate(conns) if c.responses]
        assert not early, f"answered before SIGTERM, {time.monotonic() - t_submit:.2f}s after submitting: {early[:3]}"
        assert time.monotonic() - t_submit < JOB_SECONDS - 1, "setting up took too long to test the drain"

        t_term = time.monotonic()
        server.signal(signal.SIGTERM)
        for _ in range(4):  # wait for the exit, collecting answers meanwhile
            collect(conns, 1, time.monotonic() + GRACEFUL)
            collect(conns[:2], 2, time.monotonic() + 2)
            if server.wait_exit(0.5) is not None:
                break
        rc = server.wait_exit(GRACEFUL + 5)
        t_exit = time.monotonic()
    finally:
        for conn in conns:
            conn.close()

    drain_s = t_exit - t_term
    stderr = server.stderr()
    assert rc == 0, f"exit code {rc}\n{stderr[-3000:]}"
    # the running jobs were let finish (not killed): the drain lasted about as long as they had left to run
    assert drain_s < GRACEFUL, drain_s

    # running jobs finished within the grace period; their long-polls were answered succeeded
    for conn, job_id in zip(conns[:RUNNING], running, strict=True):
        assert conn.responses, f"long-poll of running job {job_id} got no answer"
        answer = conn.responses[0]
        assert answer.status == 200, (answer.status, answer.body)
        job = answer.json()
        assert job["id"] == job_id and job["status"] == "succeeded", job
        assert answer.at <= t_term + GRACEFUL
    # queued jobs were cancelled at once, never started
    for conn, job_id in zip(conns[RUNNING:], queued, strict=True):
        assert conn.responses, f"long-poll of queued job {job_id} got no answer"
        job = conn.responses[0].json()
        assert job["status"] == "cancelled" and job["started_at"] is None, job
        assert conn.responses[0].at - t_term < JOB_SECONDS, "queued jobs are cancelled at the start of the drain"

    # during the drain /readyz answers 503 and a new submission 503 (both problem+json)
    ready = conns[0].responses[1] if len(conns[0].responses) > 1 else None
    assert ready is not None, f"the pipelined /readyz got no answer: {conns[0].responses}"
    assert ready.status == 503 and ready.headers["content-type"].startswith(PROBLEM_JSON), ready
    assert ready.json()["status"] == 503 and ready.json()["detail"], ready
    late = conns[1].responses[1] if len(conns[1].responses) > 1 else None
    assert late is not None, f"the pipelined submission got no answer: {conns[1].responses}"
    assert late.status == 503 and late.headers["content-type"].startswith(PROBLEM_JSON), late
    assert late.json()["status"] == 503 and late.headers.get("retry-after"), late

    # the JSON log: every accepted job has exactly one terminal line; the 503'd submission is not a job
    events = server.job_events()
    assert set(events) == set(running + queued), set(events) ^ set(running + queued)
    for job_id, statuses in events.items():
        terminal = [s for s in statuses if s in TERMINAL]
        assert len(terminal) == 1, (job_id, statuses)
        assert statuses[0] == "queued"
    assert all(events[j][-1] == "succeeded" for j in running)
    assert all(events[j] == ["queued", "cancelled"] for j in queued)
    msgs = [r.get("msg") for r in server.log_records()]
    assert "draining" in msgs and "drained" in msgs, msgs[-20:]
    print(
        f"\n[drain] SIGTERM with {RUNNING} running ({JOB_SECONDS}s sleeps) and {QUEUED} queued: exit 0 after "
        f"{drain_s:.2f}s (graceful-timeout {GRACEFUL}s); {RUNNING} succeeded, {QUEUED} cancelled, each once"
    )


@pytest.mark.timeout(60)
def test_sigterm_cancels_jobs_still_running_at_the_end_of_the_grace_period(server_factory: ServerFactory) -> None:
    grace = 3
    server = server_factory.start(
        env={"GREENPOOL_POOL_SIZE": "20", "GREENPOOL_GRACEFUL_TIMEOUT": str(grace), "GREENPOOL_LOG_LEVEL": "debug"},
        graceful_timeout=grace,
    )
    ids = [server.submit("sleep", {"seconds": 30})["id"] for _ in range(20)]
    server.pool_until(lambda s: s["running"] == 20, what="20 running")
    server.session.close()
    t_term = time.monotonic()
    server.signal(signal.SIGTERM)
    rc = server.wait_exit(grace + 10)
    drain_s = time.monotonic() - t_term
    assert rc == 0, server.stderr()[-3000:]
    assert drain_s < grace + 2, drain_s
    events = server.job_events()
    assert set(events) == set(ids)
    for job_id in ids:
        assert events[job_id] == ["queued", "running", "cancelled"], (job_id, events[job_id])
    print(f"\n[drain] 20 jobs longer than the grace period ({grace}s): cancelled, exit 0 after {drain_s:.2f}s")


@pytest.mark.timeout(60)
def test_cli_serve_runs_the_service(server_factory: ServerFactory) -> None:
    """`greenpool serve` (python -m service.cli serve): flags over GREENPOOL_* variables, plugins, JSON logs."""
    server = server_factory.start(
        env={"GREENPOOL_POOL_SIZE": "7", "GREENPOOL_MAX_QUEUED": "50", "GREENPOOL_LOG_LEVEL": "debug"},
        args=["--pool-size", "3", "--plugins", "tests.plugins.tasks", "--pools", "db:2"],
        cli=True,
        graceful_timeout=5,
    )
    stats = server.pool()
    assert stats["size"] == 3, stats  # the flag wins over GREENPOOL_POOL_SIZE
    assert [(p["name"], p["size"]) for p in server.get("/v1/pools").json()["pools"]] == [("default", 3), ("db", 2)]
    names = {t["name"] for t in server.get("/v1/tasks").json()["tasks"]}
    assert {"fail", "api_block", "sleep", "echo", "http"} <= names
    job = server.submit("echo", {"via": "cli"}, wait=5)
    assert job["status"] == "succeeded" and job["result"] == {"via": "cli"}
    failed = server.submit("fail", {"message": "x"}, wait=5)
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"
    assert server.get("/readyz").status_code == 200
    server.session.close()

    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    events = server.job_events()
    assert events[job["id"]] == ["queued", "running", "succeeded"]
    assert events[failed["id"]] == ["queued", "running", "failed"]
    # with the CLI, gunicorn's own records are JSON lines too
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    non_json = [line for line in lines if not line.lstrip().startswith("{")]
    assert not non_json, non_json[:5]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bind", "0.0.0.0:{port}"], "refusing to bind"),
        (["--bind", "127.0.0.1:{port}", "--pool-size", "-1"], "GREENPOOL_POOL_SIZE"),
        (["--bind", "127.0.0.1:{port}", "--pools", "db:2,Not A Name:1"], "GREENPOOL_POOLS entry 'Not A Name:1'"),
    ],
)
def test_cli_serve_refuses_bad_config(argv: list[str], message: str) -> None:
    port = free_port()
    argv = [a.format(port=port) for a in argv]
    proc = run_cli(["serve", *argv], timeout=20)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert message in proc.stderr

"""Structured logs: a real `greenpool serve` writes only JSON lines on stderr — gunicorn's own lines, one
per request (method, route, path, status, duration_s), one per job state change (job id, task, status,
durations) — and the level comes from configuration."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from ops_support import REPO, OpsServer, log_records, wait_until


@pytest.mark.timeout(60)
def test_every_stderr_line_is_json_with_request_and_job_fields(ops_server: Callable[..., OpsServer]) -> None:
    """Requests and every job state change (all four terminal states) appear as JSON with their fields."""
    server = ops_server(cli=True, env={"GREENPOOL_POOL_SIZE": "2"})
    ok = server.submit("sleep", {"seconds": 0.2})
    failed = server.submit("ops_fail", {"message": "expected failure"})
    timed_out = server.submit("sleep", {"seconds": 30}, timeout=0.2)
    cancelled = server.submit("sleep", {"seconds": 30})  # queued behind the two slots, then cancelled
    server.cancel(cancelled)
    for job_id in (ok, failed, timed_out):
        server.job(job_id, wait=5)
    assert server.get("/v1/jobs/" + "f" * 32).status_code == 404
    assert server.get("/metrics").status_code == 200
    assert server.stop() == 0

    records = log_records(server.stderr())  # fails on the first line that is not a JSON object
    assert records, "the server logged nothing"
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= set(record), record

    gunicorn = [r for r in records if r["logger"].startswith("gunicorn")]
    assert any("Starting gunicorn" in r["msg"] for r in gunicorn), gunicorn
    assert any("Booting worker" in r["msg"] for r in gunicorn), gunicorn
    assert not [r for r in records if r["logger"] == "gunicorn.access"], "requests must be logged once, by the app"

    requests_logged = [r for r in records if r["logger"] == "greenpool.http"]
    for record in requests_logged:
        assert {"method", "route", "path", "status", "duration_s"} <= set(record), record
        assert isinstance(record["status"], int) and record["duration_s"] >= 0, record
    submits = [r for r in requests_logged if r["method"] == "POST" and r["route"] == "/v1/jobs"]
    assert len(submits) == 4 and all(r["status"] == 202 for r in submits), submits
    missing = [r for r in requests_logged if r["route"] == "/v1/jobs/{job_id}" and r["status"] == 404]
    assert len(missing) == 1 and missing[0]["path"] == "/v1/jobs/" + "f" * 32, missing
    assert [r for r in requests_logged if r["route"] == "/metrics"], "the /metrics request was not logged"

    jobs = [r for r in records if r["logger"] == "greenpool.jobs" and "job_id" in r]
    by_job: dict[str, list[dict]] = {}
    for record in jobs:
        assert {"job_id", "task", "status"} <= set(record), record
        by_job.setdefault(record["job_id"], []).append(record)
    expected = {ok: "succeeded", failed: "failed", timed_out: "timed_out", cancelled: "cancelled"}
    for job_id, terminal in expected.items():
        states = [r["status"] for r in by_job[job_id]]
        started = job_id != cancelled
        assert states == (["queued", "running", terminal] if started else ["queued", terminal]), (job_id, states)
        running = [r for r in by_job[job_id] if r["status"] == "running"]
        if started:
            assert running[0]["queue_wait_s"] >= 0, running
        end = by_job[job_id][-1]
        assert "run_s" in end, end
        assert (end["run_s"] is None) == (not started), end
    assert by_job[failed][-1]["error_type"] == "ValueError"
    assert by_job[timed_out][-1]["run_s"] >= 0.2
    assert any(r["msg"] == "drained" for r in records), "the SIGTERM drain was not logged"


@pytest.mark.timeout(60)
def test_log_level_comes_from_configuration(ops_server: Callable[..., OpsServer]) -> None:
    """GREENPOOL_LOG_LEVEL=warning: no info lines at all (requests, jobs, gunicorn), warnings still JSON."""
    server = ops_server(cli=True, env={"GREENPOOL_LOG_LEVEL": "warning"})
    job_id = server.submit("echo", {"a": 1})
    wait_until(lambda: server.job(job_id)["status"] == "succeeded", 5, what="the echo job")
    assert server.get("/v1/pool").status_code == 200
    assert server.stop() == 0
    records = log_records(server.stderr())
    assert not [r for r in records if r["level"] in ("debug", "info")], records
    assert all(r["level"] in ("warning", "error", "critical") for r in records), records


@pytest.mark.timeout(60)
def test_serve_refuses_non_loopback_without_insecure() -> None:
    """Without tokens `serve` refuses a non-loopback bind and names `--insecure` (nothing is bound: the
    refusal comes before gunicorn starts; the Dockerfile test runs the image's CMD with the flag's env)."""
    refused = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--bind", "192.0.2.1:8000"],
        cwd=REPO, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert refused.returncode == 2
    assert "refusing to bind 192.0.2.1:8000" in refused.stderr and "--insecure" in refused.stderr

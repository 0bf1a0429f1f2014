"""Structured logs: a real `greenpool serve` writes only JSON lines on stderr — gunicorn's own lines, one
per request (method, route, path, status, duration_s), at `info` one per job when it ends (job id, task,
status, pile, durations, attempt, error type) and at `debug` its queued and running lines too — and the
level comes from configuration."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ops_support import OpsServer, log_records
from serverkit import run_cli
from tools import wait_until


@pytest.mark.timeout(60)
def test_every_stderr_line_is_json_with_request_and_job_fields(ops_server: Callable[..., OpsServer]) -> None:
    """Requests, and one line per job when it ends (all four terminal states), appear as JSON with their fields."""
    server = ops_server(cli=True, env={"GREENPOOL_POOL_SIZE": "2"})
    ok = server.submit("sleep", {"seconds": 0.2})
    failed = server.submit("fail", {"message": "expected failure"})
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
        assert {"job_id", "task", "status", "pile", "queue_wait_s", "run_s", "attempt", "error_type"} <= set(record)
        assert record["level"] == "info" and record["attempt"] == 1 and record["pile"] is None, record
        by_job.setdefault(record["job_id"], []).append(record)
    expected = {ok: "succeeded", failed: "failed", timed_out: "timed_out", cancelled: "cancelled"}
    assert set(by_job) == set(expected), by_job
    for job_id, terminal in expected.items():
        assert [r["status"] for r in by_job[job_id]] == [terminal], (job_id, by_job[job_id])  # one line, at the end
        end = by_job[job_id][0]
        started = job_id != cancelled
        assert (end["run_s"] is None) == (not started), end
        assert (end["queue_wait_s"] is None) == (not started), end
        if started:
            assert end["queue_wait_s"] >= 0 and end["run_s"] >= 0, end
    assert by_job[failed][0]["error_type"] == "ValueError"
    assert by_job[ok][0]["error_type"] is None
    assert by_job[timed_out][0]["run_s"] >= 0.2
    assert any(r["msg"] == "drained" for r in records), "the SIGTERM drain was not logged"


@pytest.mark.timeout(60)
def test_a_running_worker_writes_its_batched_lines_within_its_heartbeat(ops_server: Callable[..., OpsServer]) -> None:
    """Info lines are written in batches, yet an idle server's request line shows up without a stop (≤ 1 s tick)."""
    server = ops_server(cli=True)
    path = "/v1/jobs/" + "e" * 32
    assert server.get(path).status_code == 404

    def logged() -> bool:
        records = log_records(server.stderr())
        return any(r["logger"] == "greenpool.http" and r.get("path") == path for r in records)

    wait_until(logged, timeout=5, what="the request's log line, while the server runs")
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_at_debug_the_job_log_has_its_queued_and_running_lines_too(ops_server: Callable[..., OpsServer]) -> None:
    """GREENPOOL_LOG_LEVEL=debug: each job's queued and running lines (debug) come before its end line (info)."""
    server = ops_server(cli=True, env={"GREENPOOL_LOG_LEVEL": "debug"})
    job_id = server.submit("echo", {"a": 1})
    wait_until(lambda: server.job(job_id)["status"] == "succeeded", 5, what="the echo job")
    assert server.stop() == 0
    lines = [r for r in log_records(server.stderr()) if r["logger"] == "greenpool.jobs" and r.get("job_id") == job_id]
    levels = [(r["status"], r["level"]) for r in lines]
    assert levels == [("queued", "debug"), ("running", "debug"), ("succeeded", "info")], levels
    assert lines[0]["task"] == "echo" and lines[1]["queue_wait_s"] >= 0, lines
    assert lines[2]["run_s"] >= 0 and lines[2]["attempt"] == 1, lines


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
    refused = run_cli(["serve", "--bind", "192.0.2.1:8000"], timeout=30)
    assert refused.returncode == 2
    assert "refusing to bind 192.0.2.1:8000" in refused.stderr and "--insecure" in refused.stderr

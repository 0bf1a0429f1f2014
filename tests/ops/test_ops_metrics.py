"""`GET /metrics`: parsed with prometheus_client's own parser, checked against `/v1/pool` while jobs run,
and scraped by a real Prometheus (the Debian `prometheus` binary) whose query API must return the gauges."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops_support import POOL_GAUGES, TERMINAL, OpsServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import prometheus
from tools import needs, wait_until

EXPECTED_TYPES = {
    **{f"greenpool_pool_{key}": "gauge" for key in POOL_GAUGES},
    "greenpool_uptime_seconds": "gauge",
    "greenpool_jobs_submitted": "counter",
    "greenpool_jobs_finished": "counter",
    "greenpool_job_retries": "counter",
    "greenpool_job_queue_wait_seconds": "histogram",
    "greenpool_job_run_seconds": "histogram",
    "greenpool_http_requests": "counter",
    "greenpool_http_request_duration_seconds": "histogram",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "python_info": "gauge",
}


class Scrape:
    """One parsed `/metrics` answer: families by name, and sample sums by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def labelsets(self, name: str) -> list[dict[str, str]]:
        """The label sets of the samples called `name`."""
        return [s.labels for s in self.samples if s.name == name]


def scrape(server: OpsServer) -> Scrape:
    """GET /metrics, check status and content type, and parse it."""
    resp = server.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Scrape(resp.text)


def as_pool(metrics: Scrape, **pool: str) -> dict[str, float]:
    """What `/v1/pool` reports, as read from the metrics (uptime aside); `pool=NAME`: of that pool alone."""
    view = {key: metrics.value(f"greenpool_pool_{key}", **pool) for key in POOL_GAUGES}
    view["submitted"] = metrics.value("greenpool_jobs_submitted_total", **pool)
    for status in TERMINAL:
        view[status] = metrics.value("greenpool_jobs_finished_total", status=status, **pool)
    return view


def pool_view(pool: dict[str, Any]) -> dict[str, float]:
    """`/v1/pool`'s counters (without its clock and boot identity)."""
    return {k: float(v) for k, v in pool.items() if k not in ("uptime_s", "boot_id", "started_at")}


@pytest.mark.timeout(60)
def test_metrics_parse_with_conventional_names_and_types(ops_server: Callable[..., OpsServer]) -> None:
    """Every family the issue asks for is there with the right type, `greenpool_` prefix, `_total`/`_seconds`."""
    server = ops_server()
    server.job(server.submit("echo", {"x": 1}), wait=5)
    metrics = scrape(server)
    for name, kind in EXPECTED_TYPES.items():
        assert name in metrics.families, f"{name} missing; have {sorted(metrics.families)}"
        assert metrics.families[name].type == kind, (name, metrics.families[name].type)
    ours = [n for n in metrics.families if n.startswith("greenpool_")]
    assert len(ours) >= 10
    for name in ours:
        if metrics.families[name].type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in metrics.families[name].samples), name
    assert metrics.value("greenpool_jobs_submitted_total", task="echo") == 1
    assert metrics.value("greenpool_jobs_finished_total", task="echo", status="succeeded") == 1
    assert metrics.value("greenpool_job_run_seconds_count", task="echo", status="succeeded") == 1
    assert metrics.value("greenpool_job_queue_wait_seconds_count", task="echo") == 1
    # every registered task shows up (at 0) before its first job, so dashboards see it from the start
    assert metrics.value("greenpool_jobs_submitted_total", task="sleep") == 0
    assert {"pool": "default", "task": "sleep"} in metrics.labelsets("greenpool_jobs_submitted_total")
    assert metrics.value("process_resident_memory_bytes") > 0


@pytest.mark.timeout(90)
def test_metrics_agree_with_v1_pool_while_jobs_run(ops_server: Callable[..., OpsServer]) -> None:
    """While jobs are queued, running and ending in every terminal state, each scrape taken between two equal
    `/v1/pool` answers reports exactly those numbers; at the end the per-task series add up exactly."""
    server = ops_server(env={"GREENPOOL_POOL_SIZE": "3"})
    sleepers = [server.submit("sleep", {"seconds": 0.6 + 0.2 * (i % 4)}) for i in range(12)]
    timed_out = server.submit("sleep", {"seconds": 30}, timeout=0.3)
    failed = server.submit("fail", {"message": "expected"})
    to_cancel = server.submit("sleep", {"seconds": 30})
    server.cancel(to_cancel)

    agreed, busy = 0, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = server.pool()
        metrics = scrape(server)
        after = server.pool()
        if pool_view(before) == pool_view(after):  # nothing changed around the scrape: it must match exactly
            assert as_pool(metrics) == pool_view(before), (as_pool(metrics), before)
            agreed += 1
            busy += before["running"] > 0 and before["queued"] > 0
        if after["running"] == 0 and after["queued"] == 0 and after["submitted"] == sum(after[s] for s in TERMINAL):
            break
        time.sleep(0.05)
    assert agreed >= 5, f"only {agreed} scrapes fell between equal /v1/pool answers"
    assert busy >= 1, "no agreeing scrape was taken while jobs were both running and queued"

    final_pool = server.pool()
    metrics = scrape(server)
    assert as_pool(metrics) == pool_view(final_pool)
    assert final_pool["succeeded"] == len(sleepers)
    assert (final_pool["failed"], final_pool["cancelled"], final_pool["timed_out"]) == (1, 1, 1)
    assert metrics.value("greenpool_jobs_submitted_total", task="sleep") == len(sleepers) + 2
    assert metrics.value("greenpool_jobs_finished_total", task="fail", status="failed") == 1
    assert metrics.value("greenpool_jobs_finished_total", task="sleep", status="timed_out") == 1
    assert metrics.value("greenpool_jobs_finished_total", task="sleep", status="cancelled") == 1
    # histograms: every started job has a queue wait; every job that ran has a run time, by terminal state
    started = len(sleepers) + 2  # the timed-out and the failing job started; the cancelled one never did
    assert metrics.value("greenpool_job_queue_wait_seconds_count") == started
    assert metrics.value("greenpool_job_run_seconds_count") == started
    assert metrics.value("greenpool_job_run_seconds_count", status="timed_out") == 1
    run_sum = metrics.value("greenpool_job_run_seconds_sum", task="sleep", status="succeeded")
    assert run_sum >= sum(0.6 + 0.2 * (i % 4) for i in range(12)) - 0.1
    assert metrics.value("greenpool_job_queue_wait_seconds_sum") > 1.0  # 12+ jobs through 3 slots waited
    for job_id in (timed_out, failed, to_cancel):
        assert server.job(job_id)["status"] in TERMINAL


@pytest.mark.timeout(90)
def test_metrics_carry_the_pool_label_and_agree_with_v1_pools(ops_server: Callable[..., OpsServer]) -> None:
    """With jobs queued and running in two named pools beside `default`, each scrape taken between two equal
    `/v1/pools` answers reports each pool's numbers under its `pool` label."""
    server = ops_server(env={"GREENPOOL_POOLS": "db:2,io:3"})
    for i in range(8):
        for pool in ("db", "io"):
            body = {"task": "sleep", "args": {"seconds": 0.3 + 0.1 * (i % 3)}, "pool": pool}
            resp = server.post("/v1/jobs", json=body)
            assert resp.status_code == 202, resp.text
    server.submit("echo", {})

    def pools() -> dict[str, dict[str, float]]:
        return {p["name"]: pool_view({k: v for k, v in p.items() if k != "name"})
                for p in server.get("/v1/pools").json()["pools"]}  # fmt: skip

    agreed = busy = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before, metrics, after = pools(), scrape(server), pools()
        if before == after:
            assert {name: as_pool(metrics, pool=name) for name in before} == before
            agreed += 1
            busy += before["db"]["running"] == 2 and before["io"]["running"] == 3
        if all(p["running"] == p["queued"] == 0 and p["submitted"] for p in after.values()):
            break
        time.sleep(0.05)
    assert agreed >= 3 and busy >= 1, (agreed, busy)
    metrics = scrape(server)
    assert metrics.value("greenpool_jobs_finished_total", pool="db", task="sleep", status="succeeded") == 8
    assert metrics.value("greenpool_job_run_seconds_count", pool="io", task="sleep") == 8
    assert metrics.value("greenpool_job_queue_wait_seconds_count", pool="default", task="echo") == 1


@pytest.mark.timeout(60)
def test_http_requests_are_counted_by_route_template_and_status(ops_server: Callable[..., OpsServer]) -> None:
    """Requests are labelled by falcon's route template (never the raw path) and status; unknown paths share
    one `<unmatched>` label, so clients cannot create series at will."""
    server = ops_server()
    ids = [server.submit("echo", {"i": i}) for i in range(3)]
    for job_id in ids:
        server.job(job_id, wait=5)
    assert server.get("/v1/jobs/" + "0" * 32).status_code == 404
    for path in ("/no/such/path", "/another/unknown/123"):
        assert server.get(path).status_code == 404
    metrics = scrape(server)
    assert metrics.value("greenpool_http_requests_total", method="POST", route="/v1/jobs", status="202") == 3
    assert metrics.value("greenpool_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="200") == 3
    assert metrics.value("greenpool_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert metrics.value("greenpool_http_requests_total", route="<unmatched>", status="404") == 2
    routes = {labels["route"] for labels in metrics.labelsets("greenpool_http_requests_total")}
    assert not any(job_id in route for route in routes for job_id in ids), routes
    assert not any("unknown" in route or "no/such" in route for route in routes), routes
    assert metrics.value("greenpool_http_request_duration_seconds_count", route="/v1/jobs") == 3


# -- a real Prometheus -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@needs("prometheus")
def test_real_prometheus_scrapes_the_service(ops_server: Callable[..., OpsServer], tmp_path: Path) -> None:
    """Prometheus, on loopback with a temporary config, scrapes /metrics: its query API returns
    `greenpool_pool_running` equal to what `/v1/pool` reports, and the target is up."""
    server = ops_server(env={"GREENPOOL_POOL_SIZE": "4"})
    for _ in range(6):
        server.submit("sleep", {"seconds": 60})  # 4 running, 2 queued until the server stops
    wait_until(lambda: server.pool()["running"] == 4, 10, what="4 running jobs")

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: greenpool\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    with prometheus(tmp_path, config) as prom:
        result = wait_until(lambda: prom.query("greenpool_pool_running"), 45, 0.5, "greenpool_pool_running")
        assert result[0]["metric"]["job"] == "greenpool"
        assert float(result[0]["value"][1]) == server.pool()["running"] == 4
        queued = wait_until(lambda: prom.query("greenpool_pool_queued"), 10, 0.5, "greenpool_pool_queued")
        assert float(queued[0]["value"][1]) == 2
        up = wait_until(lambda: prom.query('up{job="greenpool"}'), 10, 0.5, "up")
        assert float(up[0]["value"][1]) == 1
        submitted = wait_until(lambda: prom.query("sum(greenpool_jobs_submitted_total)"), 10, 0.5, "submitted")
        assert float(submitted[0]["value"][1]) == 6
        targets = prom.get("targets")["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets

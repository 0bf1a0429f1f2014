"""Prometheus metrics: the app's own registry, pool gauges read at scrape time, job and HTTP counters.

Each app has its own `CollectorRegistry` (never prometheus_client's global one), so several apps in one
process (tests) do not collide. The pool gauges are computed from `engine.stats(pool)` when scraped, one
series per named pool (label `pool`), so they agree with `GET /v1/pools` by construction; job counters and
histograms (labels `pool` and `task`) are fed by the engine's observer hook, synchronously on the hub, so
one scrape is a consistent snapshot: submitted = finished + running + queued, per pool, per task and in
total. HTTP requests are counted by `service.middleware` by route template. In cluster mode each replica
reports its own figures (not the cluster's), every sample labelled `replica` with its id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..config import DEFAULT_POOL
from ..engine import QUEUED, RETRYING, RUNNING, TERMINAL, Engine, Job

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsResource"]

#: The classic text exposition format (what Prometheus and every scraper read); prometheus_client's
#: CONTENT_TYPE_LATEST moved to 1.0.0 in recent releases, so name the one we produce explicitly.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "greenpool_"
QUEUE_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))
RUN_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, float("inf"))
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, float("inf"))
#: Methods counted under their own name; anything else is "other" (a client picks the method: cardinality).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of requests that matched no route (never the raw path: cardinality).
UNMATCHED = "<unmatched>"

_POOL_GAUGES = {
    "size": "Jobs that may run at once (the pool's size).",
    "running": "Jobs running now.",
    "held": "Slots still held by OS threads of blocking jobs that already ended (timed out or cancelled).",
    "free": "Free slots: size - running (negative after a shrink until enough jobs end, as in /v1/pool).",
    "waiting": "Spawners blocked on a full pool (the engine's dispatcher, when the pool is full).",
    "queued": "Accepted jobs waiting in the submit queue (delayed ones included).",
    "delayed": "Queued jobs whose not_before (a delay, a retry's backoff) is still ahead.",
}


class PoolCollector(Collector):
    """Pool gauges from one `engine.stats(pool)` snapshot per pool and scrape: equal to `/v1/pools` by
    construction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        """Yield size, running, held, free, waiting and queued of each pool (label `pool`), uptime, and
        whether the server drains and its store refuses new work."""
        engine = self.engine
        snapshots = [(name, engine.stats(name)) for name in engine.pool_names()]
        for key, doc in _POOL_GAUGES.items():
            family = GaugeMetricFamily(f"{PREFIX}pool_{key}", doc, labels=["pool"])
            for name, stats in snapshots:
                family.add_metric([name], stats[key])
            yield family
        uptime = snapshots[0][1]["uptime_s"]
        yield GaugeMetricFamily(f"{PREFIX}uptime_seconds", "Seconds since the engine started.", value=uptime)
        draining = 1 if self.engine.draining else 0
        yield GaugeMetricFamily(f"{PREFIX}draining", "1 while the server drains (SIGTERM), else 0.", value=draining)
        refusing = 0 if self.engine.store.unavailable() is None else 1
        yield GaugeMetricFamily(f"{PREFIX}store_unavailable", "1 while the store takes no new work (it is full, or"
                                " cannot commit: submissions get 503 store-unavailable), else 0.", value=refusing)

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: collect() is cheap and has no side effects."""
        return iter(())


class Metrics:
    """The registry of one app: process and platform collectors, pool gauges, job and HTTP metrics."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(PoolCollector(engine))
        reg = self.registry
        self.jobs_submitted = Counter(f"{PREFIX}jobs_submitted", "Jobs accepted, by pool and task.", ["pool", "task"],
                                      registry=reg)  # fmt: skip
        self.jobs_finished = Counter(
            f"{PREFIX}jobs_finished", "Jobs that reached a terminal state, by pool, task and state.",
            ["pool", "task", "status"], registry=reg,
        )  # fmt: skip
        self.job_retries = Counter(
            f"{PREFIX}job_retries", "Attempts that failed, timed out or were lost and were followed by another one, "
            "by pool and task.", ["pool", "task"], registry=reg,
        )  # fmt: skip
        self.queue_wait = Histogram(
            f"{PREFIX}job_queue_wait_seconds", "Seconds a job waited in the queue before it started, by pool and task.",
            ["pool", "task"], buckets=QUEUE_WAIT_BUCKETS, registry=reg,
        )  # fmt: skip
        self.run_time = Histogram(
            f"{PREFIX}job_run_seconds", "Seconds a job ran (started jobs only), by pool, task and terminal state.",
            ["pool", "task", "status"], buckets=RUN_BUCKETS, registry=reg,
        )  # fmt: skip
        self.http_requests = Counter(
            f"{PREFIX}http_requests", "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"], registry=reg,
        )  # fmt: skip
        self.http_duration = Histogram(
            f"{PREFIX}http_request_duration_seconds",
            "Seconds from request to response headers (a stream's body is not included), by method and route.",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=reg,
        )  # fmt: skip
        self._request_children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        # `labels()` validates and locks: each job event looks its child up here instead (created on first use,
        # as before, so a series appears in the exposition only once it has something to count).
        self._job_children: dict[tuple[Any, str, str, str], Any] = {}
        pools = set(engine.pool_names())
        for spec in engine.registry.describe():  # every known task shows up as 0 (in its pool) before its first job
            pool = spec["pool"] or DEFAULT_POOL
            if pool in pools:
                self.jobs_submitted.labels(pool, spec["name"])
                self.job_retries.labels(pool, spec["name"])
                for status in TERMINAL:
                    self.jobs_finished.labels(pool, spec["name"], status)
        engine.observers.append(self.observe)
        replica = engine.cluster.replica
        self._exposed: Any = self.registry if replica is None else _Labelled(self.registry, replica)

    def observe(self, event: str, job: Job) -> None:
        """The engine's observer: count submissions and ends, time queue waits and runs."""
        if event == QUEUED:
            self._child(self.jobs_submitted, job).inc()
        elif event == RUNNING:
            waited = job.queue_seconds()
            if waited is not None:
                self._child(self.queue_wait, job).observe(max(0.0, waited))
        elif event in TERMINAL:
            self._child(self.jobs_finished, job, event).inc()
            ran = job.run_seconds()
            if ran is not None:
                self._child(self.run_time, job, event).observe(ran)
        elif event == RETRYING:
            self._child(self.job_retries, job).inc()

    def _child(self, metric: Any, job: Job, status: str = "") -> Any:
        """`metric.labels(pool, task)` or `metric.labels(pool, task, status)` of `job`, looked up once per
        label set."""
        pool, task = job.pool, job.task
        key = (metric, pool, task, status)
        child = self._job_children.get(key)
        if child is None:
            labels = (pool, task, status) if status else (pool, task)
            child = self._job_children[key] = metric.labels(*labels)
        return child

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one answered request (called by `service.middleware`)."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # `labels()` validates and locks: look each label set up once
            label = method if method in KNOWN_METHODS else "other"
            children = (
                self.http_requests.labels(label, route or UNMATCHED, str(status)),
                self.http_duration.labels(label, route or UNMATCHED),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The text exposition of everything in the registry."""
        return generate_latest(self._exposed)


class _Labelled:
    """The registry as one replica of a cluster exposes it: every sample also labelled `replica` (its id)."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry, self.replica = registry, replica

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():  # fresh Metric objects at each collect
            metric.samples = [s._replace(labels={**s.labels, "replica": self.replica}) for s in metric.samples]
            yield metric


class MetricsResource:
    """`GET /metrics`: the Prometheus text exposition (format 0.0.4)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.cache_control = ["no-store"]
        resp.data = self.metrics.render()

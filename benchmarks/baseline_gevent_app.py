"""Baseline for benchmarks/bench_http.py: a minimal falcon app with greenpool's two benchmarked routes.

Served by gunicorn's gevent worker (`gunicorn -k gevent -w 1 baseline_gevent_app:app`), it answers like
greenpool but does no real work: GET /v1/pool returns a dict of counters; POST /v1/jobs parses the JSON
body, checks its shape and returns 202 with a job-like JSON body and a Location header. It imports nothing
from greenpool, so the gevent worker's monkey-patching never meets pool_core.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import falcon

_STARTED = time.monotonic()


def _now() -> str:
    """The current UTC time as RFC 3339 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Counters:
    """Job counters shaped like greenpool's `/v1/pool` answer."""

    def __init__(self) -> None:
        self.submitted = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters `/v1/pool` reports (every job "succeeds" at once: there is no pool)."""
        return {
            "size": 100,
            "running": 0,
            "free": 100,
            "waiting": 0,
            "queued": 0,
            "submitted": self.submitted,
            "succeeded": self.submitted,
            "failed": 0,
            "cancelled": 0,
            "timed_out": 0,
            "uptime_s": round(time.monotonic() - _STARTED, 3),
        }


class PoolResource:
    """GET /v1/pool: the counters."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.counters.as_dict()


class JobsResource:
    """POST /v1/jobs: accept `{task, args}` and answer 202 with a job-like body (nothing runs)."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media()
        if not isinstance(body, dict) or not isinstance(body.get("task"), str):
            raise falcon.HTTPUnprocessableEntity(description="expected {task, args}")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise falcon.HTTPUnprocessableEntity(description="args must be a JSON object")
        self.counters.submitted += 1
        job_id = uuid.uuid4().hex
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/jobs/{job_id}"
        resp.media = {
            "id": job_id,
            "task": body["task"],
            "args": args,
            "status": "queued",
            "result": None,
            "error": None,
            "pile": None,
            "timeout": body.get("timeout"),
            "submitted_at": _now(),
            "started_at": None,
            "finished_at": None,
        }


def create_app() -> falcon.App:
    """The baseline falcon app with GET /v1/pool and POST /v1/jobs."""
    counters = Counters()
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.add_route("/v1/pool", PoolResource(counters))
    app.add_route("/v1/jobs", JobsResource(counters))
    return app


app = create_app()

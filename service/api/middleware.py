"""Request middleware: one JSON access-log line and one metrics observation per answered request, and
no answer to a request that changes something before the change is in the store.

The route is falcon's `req.uri_template` (e.g. `/v1/jobs/{job_id}`), never the raw path, so metrics have
bounded label cardinality; the raw path is only logged. Durations end when the responder returns: for a
streamed body (pile results, map) that is when the stream starts, not when it ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import falcon

from .. import logs
from ..engine import Engine
from .errors import BadRequest
from .metrics import UNMATCHED, Metrics

__all__ = ["CommitMiddleware", "RequestMiddleware"]

log = logging.getLogger("greenpool.http")
_READS = frozenset(("GET", "HEAD", "OPTIONS"))  # the methods that change nothing: no commit to wait for


class RequestMiddleware:
    """Times each request, counts it by method, route and status, and logs it as one JSON line."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Note when the request arrived; 400 for an HTTP/1.1 request without a Host header (RFC 9112 §3.2)."""
        req.context.started = time.monotonic()
        if "HTTP_HOST" not in req.env and req.env.get("SERVER_PROTOCOL") == "HTTP/1.1":
            raise BadRequest("an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)", parameter="Host")

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        """Observe and log the answered request."""
        started = getattr(req.context, "started", None)
        seconds = 0.0 if started is None else time.monotonic() - started
        route = req.uri_template or UNMATCHED
        status = resp.status_code
        self.metrics.observe_request(req.method, route, status, seconds)
        logs.info(
            log,
            "request",
            {
                "method": req.method,
                "route": route,
                "path": req.path,
                "status": status,
                "duration_s": round(seconds, 6),
                "remote": req.remote_addr,
            },
        )


class CommitMiddleware:
    """Acknowledge only what is stored: before any answer to a request that may change something (every
    method but GET, HEAD and OPTIONS: jobs, piles, map, cancel, resize, idempotency keys), wait for the engine's
    store to commit it. The one place the API does so; its headers leave only afterwards, a streamed body
    (map) too."""

    def __init__(self, engine: Engine) -> None:
        self.commit = engine.commit

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        """Commit what this request changed (and whatever other requests changed meanwhile)."""
        if req.method not in _READS:
            self.commit()

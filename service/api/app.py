"""The falcon application: config → registry → engine → resources → routes, and nothing else.

`create_app(config, services)` builds it (`services`: a store, a clock and an id source to use instead of
the defaults, as in-process tests inject them); `service.app:app` (what gunicorn loads) builds it from the environment
on first access, inside the worker process, so the engine lives on that worker's hub.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import falcon

from .. import lifecycle, logs
from ..config import Config
from ..engine import Engine, Store
from ..engine.errors import EngineError
from ..tasks import Registry
from .auth import AuthMiddleware
from .errors import PROBLEM_JSON, Problem, problem_for
from .idempotency import IdempotencyStore
from .media import dumps
from .metrics import Metrics, MetricsResource
from .middleware import RequestMiddleware
from .resources import (
    HealthResource,
    JobResource,
    JobsResource,
    MapResource,
    OpenAPIResource,
    PileCloseResource,
    PileJobsResource,
    PileResource,
    PileResultsResource,
    PilesResource,
    PoolResource,
    ReadyResource,
    TasksResource,
)
from .resources.dashboard import DashboardResource, StaticResource
from .resources.whoami import WhoAmIResource

log = logging.getLogger("greenpool.http")
_DRAIN_MARGIN = 0.5


class GreenpoolApp(falcon.App):
    """falcon's App (which has __slots__) plus the `engine` it serves, for tests and tools to reach."""

    engine: Engine


@dataclass(frozen=True)
class Services:
    """The engine's collaborators: its store (default: a memory store), its wall clock and its id source
    (default: random 128-bit ids)."""

    store: Store | None = None
    clock: Callable[[], float] = time.time
    ids: Iterator[str] | None = None


def create_app(config: Config | None = None, services: Services | None = None) -> GreenpoolApp:
    """Build the WSGI app and its engine from `config` (default: the environment) and `services`."""
    config = config or Config.from_env()
    services = services or Services()
    logs.configure(config.log_level)
    registry = Registry.with_builtins(http_allow=list(config.http_allow), plugins=list(config.plugins))
    engine = Engine(config, registry, services.store, services.clock, services.ids)
    lifecycle.on_drain(lambda: engine.drain(_grace_left(config)))

    metrics = Metrics(engine)
    auth = AuthMiddleware(config.token_table(), config.metrics_public)
    keys = IdempotencyStore(engine, engine.store.keys)
    app = GreenpoolApp(media_type=falcon.MEDIA_JSON, middleware=[RequestMiddleware(metrics), auth])
    app.req_options.strip_url_path_trailing_slash = True
    json_handler = falcon.media.JSONHandler(dumps=dumps, loads=json.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_error_handler(Problem, _render_problem)
    app.add_error_handler(EngineError, _render_engine_error)
    app.set_error_serializer(_serialize_http_error)
    app.add_route("/v1/tasks", TasksResource(registry))
    app.add_route("/v1/jobs", JobsResource(engine, keys))
    app.add_route("/v1/jobs/{job_id}", JobResource(engine))
    app.add_route("/v1/piles", PilesResource(engine, keys))
    app.add_route("/v1/piles/{pile_id}", PileResource(engine))
    app.add_route("/v1/piles/{pile_id}/jobs", PileJobsResource(engine))
    app.add_route("/v1/piles/{pile_id}/close", PileCloseResource(engine))
    app.add_route("/v1/piles/{pile_id}/results", PileResultsResource(engine))
    app.add_route("/v1/map", MapResource(engine))
    app.add_route("/v1/pool", PoolResource(engine))
    app.add_route("/v1/whoami", WhoAmIResource())
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(engine))
    app.add_route("/openapi.yaml", OpenAPIResource())
    app.add_route("/metrics", MetricsResource(metrics))
    app.add_route("/", DashboardResource())
    app.add_route("/static/{name}", StaticResource())
    app.engine = engine
    return app


def _grace_left(config: Config) -> float:
    """Seconds the worker's drain leaves for running jobs (a margin before it kills what is left)."""
    deadline = lifecycle.deadline()
    if deadline is None:
        return config.graceful_timeout
    return max(0.0, deadline - time.monotonic() - _DRAIN_MARGIN)


def _render_problem(req: falcon.Request, resp: falcon.Response, ex: Problem, params: dict[str, Any]) -> None:
    resp.status = ex.status
    resp.content_type = PROBLEM_JSON
    resp.data = dumps(ex.to_dict())
    for name, value in ex.headers.items():
        resp.set_header(name, value)


def _render_engine_error(req: falcon.Request, resp: falcon.Response, ex: EngineError, params: dict[str, Any]) -> None:
    _render_problem(req, resp, problem_for(ex), params)


def _serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    body = {"type": "about:blank", "title": ex.title, "status": ex.status_code}
    body["detail"] = ex.description or _default_detail(req, resp, ex.status_code)
    resp.content_type = PROBLEM_JSON
    resp.data = dumps(body)


def _default_detail(req: falcon.Request, resp: falcon.Response, status: int) -> str:
    if status == 404:
        return f"nothing is served at {req.path}; see /openapi.yaml for the routes"
    if status == 405:
        allowed = resp.get_header("Allow") or "see /openapi.yaml"
        return f"{req.method} is not allowed on {req.path}; allowed: {allowed}"
    return f"the request could not be served ({status})"


def __getattr__(name: str) -> Any:
    """`service.app.app`: built lazily from the environment (what `gunicorn service.app:app` loads)."""
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)

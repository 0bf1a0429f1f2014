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
from ..encoding import dumps
from ..engine import Engine, Store, StoreError
from ..engine.errors import EngineError, StoreUnavailable
from ..tasks import Registry, default_registry
from .auth import AuthMiddleware
from .errors import PROBLEM_JSON, Problem, problem_for
from .idempotency import IdempotencyStore
from .metrics import Metrics, MetricsResource
from .middleware import CommitMiddleware, RequestMiddleware
from .resources import (
    HealthResource,
    JobResource,
    JobsResource,
    MapResource,
    NamedPoolResource,
    OpenAPIResource,
    PileCloseResource,
    PileJobsResource,
    PileResource,
    PileResultsResource,
    PilesResource,
    PoolHistoryResource,
    PoolResource,
    PoolsResource,
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
    engine.recover()  # after the metrics' observer is attached: what recovery ends is counted
    auth = AuthMiddleware(config.token_table(), config.metrics_public)
    keys = IdempotencyStore(engine, engine.store.keys)
    middleware: list[Any] = [RequestMiddleware(metrics), auth]
    if engine.store.durable:  # a memory store has nothing to wait for: no per-request cost
        middleware.append(CommitMiddleware(engine))
    app = GreenpoolApp(media_type=falcon.MEDIA_JSON, middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    json_handler = falcon.media.JSONHandler(dumps=dumps, loads=json.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_error_handler(Problem, _render_problem)
    app.add_error_handler(EngineError, _render_engine_error)
    app.add_error_handler(StoreError, _render_store_error)
    app.set_error_serializer(_serialize_http_error)
    _route(app, "/v1/tasks", TasksResource(registry))
    _route(app, "/v1/jobs", JobsResource(engine, keys))
    _route(app, "/v1/jobs/{job_id}", JobResource(engine))
    _route(app, "/v1/piles", PilesResource(engine, keys))
    _route(app, "/v1/piles/{pile_id}", PileResource(engine))
    _route(app, "/v1/piles/{pile_id}/jobs", PileJobsResource(engine))
    _route(app, "/v1/piles/{pile_id}/close", PileCloseResource(engine))
    _route(app, "/v1/piles/{pile_id}/results", PileResultsResource(engine))
    _route(app, "/v1/map", MapResource(engine))
    _route(app, "/v1/pool", PoolResource(engine))
    _route(app, "/v1/pool/history", PoolHistoryResource(engine))
    _route(app, "/v1/pools", PoolsResource(engine))
    _route(app, "/v1/pools/{name}", NamedPoolResource(engine))
    _route(app, "/v1/pools/{name}/history", PoolHistoryResource(engine))
    _route(app, "/v1/whoami", WhoAmIResource())
    _route(app, "/healthz", HealthResource(engine))
    _route(app, "/readyz", ReadyResource(engine))
    _route(app, "/openapi.yaml", OpenAPIResource(registry.describe(), default_registry.describe()))
    _route(app, "/metrics", MetricsResource(metrics))
    _route(app, "/", DashboardResource())
    _route(app, "/static/{name}", StaticResource())
    app.engine = engine
    return app


def _route(app: falcon.App, template: str, resource: Any) -> None:
    """Add a route; a resource that answers GET answers HEAD too (RFC 9110 §9.3.2: load balancers check
    health with HEAD): its GET responder runs, and falcon sends the status and headers without the body."""
    get = getattr(resource, "on_get", None)
    if get is not None and not hasattr(resource, "on_head"):
        resource.on_head = _head_of(get)
    app.add_route(template, resource)


def _head_of(get: Callable[..., None]) -> Callable[..., None]:
    """A HEAD responder: `get`, with a streamed body closed at once rather than run (which frees what the
    stream holds, such as its reader slot) and no Content-Length put in its place."""

    def on_head(req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        get(req, resp, **params)
        if _drop_stream(resp):
            resp.stream = iter(())

    return on_head


def _grace_left(config: Config) -> float:
    """Seconds the worker's drain leaves for running jobs (a margin before it kills what is left)."""
    deadline = lifecycle.deadline()
    if deadline is None:
        return config.graceful_timeout
    return max(0.0, deadline - time.monotonic() - _DRAIN_MARGIN)


def _drop_stream(resp: falcon.Response) -> bool:
    """Close and take away the response's streamed body, if it has one (freeing what the stream holds, such
    as its reader slot); True if it had one."""
    stream = resp.stream
    if stream is None:
        return False
    resp.stream = None
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    return True


def _render_problem(req: falcon.Request, resp: falcon.Response, ex: Problem, params: dict[str, Any]) -> None:
    _drop_stream(resp)  # a problem raised after the body was set up (a commit that failed) replaces it
    resp.status = ex.status
    resp.content_type = PROBLEM_JSON
    resp.data = dumps(ex.to_dict())
    for name, value in ex.headers.items():
        resp.set_header(name, value)


def _render_engine_error(req: falcon.Request, resp: falcon.Response, ex: EngineError, params: dict[str, Any]) -> None:
    _render_problem(req, resp, problem_for(ex), params)


def _render_store_error(req: falcon.Request, resp: falcon.Response, ex: StoreError, params: dict[str, Any]) -> None:
    """A store call that failed mid-request (Redis cannot be reached): 503 `store-unavailable`, never a 500."""
    _render_engine_error(req, resp, StoreUnavailable(str(ex)), params)


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

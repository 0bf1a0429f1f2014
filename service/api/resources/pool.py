"""`/v1/pool` (the `default` pool) and `/v1/pools…` (every named pool): live counters, resizing at runtime,
creating and deleting pools."""

from __future__ import annotations

import falcon

from ...config import POOL_NAME
from ...engine import Engine
from ..errors import ValidationFailed
from .body import read_json_object
from .jobs import POOL_MESSAGE


def read_size(req: falcon.Request, engine: Engine, what: str = "resize") -> int:
    """The body `{size}`: an integer from 0 to `max_pool_size` (422 naming each bad field otherwise)."""
    body = read_json_object(req, engine.config.max_body_bytes)
    size, high = body.get("size"), engine.config.max_pool_size
    if isinstance(size, float) and size.is_integer():
        size = int(size)  # `983.0` is an integer in JSON Schema, as in the document's `type: integer`
    errors = [{"field": k, "message": "unknown field"} for k in body if k != "size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= high:
        errors.append({"field": "size", "message": f"required: an integer from 0 to {high}"})
    if errors:
        raise ValidationFailed(f"cannot {what}: " + ", ".join(e["field"] for e in errors), errors)
    return size


class PoolResource:
    """GET reports the `default` pool's size/running/free/waiting/queued and job counters; PATCH `{size}`
    resizes it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.engine.report()

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.engine.resize(read_size(req, self.engine))
        resp.media = self.engine.report()


class PoolsResource:
    """GET: every pool's counters (as `/v1/pool`) with its `name`, `default` first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        engine = self.engine
        resp.media = {"pools": [{"name": name, **engine.report(name)} for name in engine.pool_names()]}


class NamedPoolResource:
    """GET one pool; PUT `{size}` creates (201) or resizes (200) it; DELETE removes an idle one (204)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = {"name": name, **self.engine.report(name)}

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if not POOL_NAME.fullmatch(name):
            raise ValidationFailed(f"cannot create pool {name!r}: name", [{"field": "name", "message": POOL_MESSAGE}])
        created = self.engine.resize(read_size(req, self.engine, f"size pool {name}"), name)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        if created:
            resp.location = f"/v1/pools/{name}"
        resp.media = {"name": name, **self.engine.report(name)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.engine.delete_pool(name)
        resp.status = falcon.HTTP_204


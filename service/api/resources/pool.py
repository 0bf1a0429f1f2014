"""`/v1/pool`: the pool's live counters, and resizing it at runtime."""

from __future__ import annotations

import falcon

from ...engine import Engine
from ..errors import ValidationFailed
from .body import read_json_object


class PoolResource:
    """GET reports size/running/free/waiting/queued and job counters; PATCH `{size}` resizes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.engine.stats()

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, self.engine.config.max_body_bytes)
        size, high = body.get("size"), self.engine.config.max_pool_size
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # `983.0` is an integer in JSON Schema, as in the document's `type: integer`
        errors = [{"field": k, "message": "unknown field"} for k in body if k != "size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= high:
            errors.append({"field": "size", "message": f"required: an integer from 0 to {high}"})
        if errors:
            raise ValidationFailed("cannot resize: " + ", ".join(e["field"] for e in errors), errors)
        self.engine.resize(size)
        resp.media = self.engine.stats()

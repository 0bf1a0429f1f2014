"""`/healthz`, `/readyz` and `/openapi.yaml`: liveness, readiness, and the contract itself."""

from __future__ import annotations

from importlib import resources

import falcon

from ...engine import Engine
from ..errors import Draining


class HealthResource:
    """Alive as long as the process answers; `boot_id` and `started_at` show a restart."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", **self.engine.boot}


class ReadyResource:
    """Ready to take work: 503 while draining."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.engine.draining:
            raise Draining()
        resp.media = {"status": "ready"}


class OpenAPIResource:
    """The OpenAPI 3.1 document this server implements."""

    def __init__(self) -> None:
        self.document = resources.files("service").joinpath("openapi.yaml").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/yaml"
        resp.data = self.document

"""`/healthz`, `/readyz` and `/openapi.yaml`: liveness, readiness, and the contract itself."""

from __future__ import annotations

from importlib import resources
from typing import Any

import falcon

from ...engine import Engine
from ..errors import Draining
from ..openapi_doc import served_document


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
    """The OpenAPI 3.1 document this server implements: openapi.yaml as it is while this server's `tasks` are
    the `builtins` it states, else with the task schemas rebuilt from `tasks` (plugins included)."""

    def __init__(self, tasks: list[dict[str, Any]], builtins: list[dict[str, Any]]) -> None:
        text = resources.files("service").joinpath("openapi.yaml").read_text(encoding="utf-8")
        self.document = (text if tasks == builtins else served_document(text, tasks)).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/yaml"
        resp.data = self.document

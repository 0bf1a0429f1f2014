"""`/v1/tasks`: the registered tasks and the JSON Schema of their arguments."""

from __future__ import annotations

import falcon

from ...tasks import Registry


class TasksResource:
    """GET lists every task a job may name."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"tasks": self.registry.describe()}

"""`/v1/pool/history`: the pool's gauges over the last five minutes, so a dashboard's chart is full at once."""

from __future__ import annotations

import falcon

from ...engine import Engine


class PoolHistoryResource:
    """GET: one sample a second of size/running/held/free/waiting/queued, oldest first, and the server's now."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.engine.history()

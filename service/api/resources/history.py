"""`/v1/pool/history` and `/v1/pools/{name}/history`: a pool's gauges over the last five minutes, so a
dashboard's chart is full at once."""

from __future__ import annotations

import falcon

from ...config import DEFAULT_POOL
from ...engine import Engine


class PoolHistoryResource:
    """GET: one sample a second of size/running/held/free/waiting/queued, oldest first, and the server's now
    (the `default` pool, or the one named in the path; 404 for an unknown pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = DEFAULT_POOL) -> None:
        resp.media = self.engine.history(name)

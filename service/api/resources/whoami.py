"""`/v1/whoami`: the name and role of the token a request carries (the dashboard uses it to show controls)."""

from __future__ import annotations

import falcon

from ..auth import principal_of


class WhoAmIResource:
    """GET answers `{name, role}` (name null, role admin while no tokens are configured)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = principal_of(req)
        resp.media = {"name": principal.name, "role": principal.role}

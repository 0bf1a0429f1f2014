"""`GET /` and `GET /static/{name}`: the live dashboard page and the few files it loads, all served here."""

from __future__ import annotations

from importlib import resources

import falcon

from ..errors import NotFound

#: The only files served under /static/, with their content types (anything else is a 404 problem).
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "pools.js": "text/javascript; charset=utf-8",
    "replicas.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
INDEX = "index.html"


def _read(name: str) -> bytes:
    return resources.files("service.api").joinpath("static", name).read_bytes()


class DashboardResource:
    """The dashboard page (plain HTML; its script polls the API)."""

    def __init__(self) -> None:
        self.page = _read(INDEX)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", _CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.data = self.page


class StaticResource:
    """The dashboard's script and stylesheet, read once at startup; nothing else."""

    def __init__(self) -> None:
        self.files = {name: (_read(name), media) for name, media in STATIC_FILES.items()}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        found = self.files.get(name)
        if found is None:
            raise NotFound(f"no static file named {name!r} (served: {', '.join(sorted(self.files))})")
        resp.data, resp.content_type = found
        resp.cache_control = ["no-cache"]
        resp.set_header("X-Content-Type-Options", "nosniff")


#: Everything the page loads comes from this server: no CDN, no inline script.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"

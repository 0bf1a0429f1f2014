"""Bearer tokens, roles, and who may do what: the one policy table and the middleware that applies it.

Tokens come from configuration (`GREENPOOL_TOKENS`, `GREENPOOL_TOKENS_FILE`; see `load_tokens`), each with a
name and a role: `submit` (submit jobs, piles and maps; read, stream and cancel its own) or `admin`
(everything: resize, read and cancel anyone's). With no tokens configured, authentication is off and every
request acts as an anonymous admin (the server then only binds loopback unless `--insecure`).

A presented token is hashed and compared with `hmac.compare_digest` against every configured token's
digest — all of them, always — so neither timing nor the number of comparisons tells which one was close.
Ownership: jobs and piles record the name of the token that created them; a `submit` token asking for
another token's job or pile gets the same 404 as for an unknown id (existence is not revealed).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import falcon

from ..config import ADMIN, ROLES, SUBMIT, Token, load_tokens
from ..config import token_digest as _digest
from .errors import Forbidden, JobNotFound, PileNotFound, Unauthorized

__all__ = [
    "ADMIN", "ANONYMOUS", "POLICY", "ROLES", "SUBMIT", "AuthMiddleware", "Principal", "Token", "load_tokens",
    "principal_of", "visible_job", "visible_pile",
]  # fmt: skip

_RANK = {SUBMIT: 1, ADMIN: 2}
OPEN = None  # no token needed
METRICS = "metrics"  # placeholder: OPEN when GREENPOOL_METRICS_PUBLIC (the default), else SUBMIT

#: Who may call what: {route template: {method: the least role needed, or OPEN}}. The one place it is said.
#: A `submit` token only sees its own jobs and piles on the routes marked (own); an `admin` sees all.
#: A route missing here needs `admin` (fail closed); a method a resource does not serve is left to falcon
#: (405, and OPTIONS) without a token.
POLICY: dict[str, dict[str, str | None]] = {
    "/v1/tasks": {"GET": SUBMIT},
    "/v1/jobs": {"POST": SUBMIT, "GET": SUBMIT},  # GET lists (own)
    "/v1/jobs/{job_id}": {"GET": SUBMIT, "DELETE": SUBMIT},  # (own)
    "/v1/piles": {"POST": SUBMIT},
    "/v1/piles/{pile_id}": {"GET": SUBMIT},  # (own)
    "/v1/piles/{pile_id}/jobs": {"POST": SUBMIT},  # (own)
    "/v1/piles/{pile_id}/close": {"POST": SUBMIT},  # (own)
    "/v1/piles/{pile_id}/results": {"GET": SUBMIT},  # (own)
    "/v1/map": {"POST": SUBMIT},
    "/v1/pool": {"GET": SUBMIT, "PATCH": ADMIN},
    "/v1/pool/history": {"GET": SUBMIT},
    "/v1/pools": {"GET": SUBMIT},
    "/v1/pools/{name}": {"GET": SUBMIT, "PUT": ADMIN, "DELETE": ADMIN},
    "/v1/pools/{name}/history": {"GET": SUBMIT},
    "/v1/whoami": {"GET": SUBMIT},
    "/healthz": {"GET": OPEN},
    "/readyz": {"GET": OPEN},
    "/openapi.yaml": {"GET": OPEN},
    "/metrics": {"GET": METRICS},
    "/": {"GET": OPEN},  # the dashboard page; its API calls carry the token
    "/static/{name}": {"GET": OPEN},
}

@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a token's name and role (name None: authentication is off)."""

    name: str | None
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def sees(self, owner: str | None) -> bool:
        """May this principal read and cancel what `owner` created?"""
        return self.is_admin or owner == self.name

    @property
    def only_owner(self) -> str | None:
        """The owner a listing is limited to, or None for everyone's."""
        return None if self.is_admin else self.name


ANONYMOUS = Principal(None, ADMIN)  # every request when no tokens are configured
NOBODY = Principal(None, "")  # on an open route with authentication on


class AuthMiddleware:
    """Resolves `Authorization: Bearer <token>` to `req.context.principal` and applies `POLICY`."""

    def __init__(self, tokens: tuple[Token, ...], metrics_public: bool = True) -> None:
        self.tokens = tokens
        self.metrics = OPEN if metrics_public else SUBMIT

    def authenticate(self, header: str | None) -> Principal:
        """The principal for an Authorization header; Unauthorized if there is none or it matches no token."""
        if not self.tokens:
            return ANONYMOUS
        if header is None:
            raise Unauthorized("this request needs a bearer token: send `Authorization: Bearer <token>`")
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer":
            raise Unauthorized("only the Bearer scheme is accepted: send `Authorization: Bearer <token>`")
        if not credentials:
            raise Unauthorized("the Authorization header has no token after `Bearer`", error="invalid_request")
        digest = _digest(credentials)
        found: Token | None = None
        for token in self.tokens:  # every token, every time: no early exit to time
            if hmac.compare_digest(digest, token.digest) and found is None:
                found = token
        if found is None:
            raise Unauthorized("the bearer token is not valid", error="invalid_token")
        return Principal(found.name, found.role)

    def requirement(self, route: str | None, method: str, resource: Any) -> str | None:
        """The least role `method` on `route` needs (None: open); HEAD needs what GET needs."""
        if method == "HEAD":
            method = "GET"
        methods = POLICY.get(route or "")
        if methods is None:
            return ADMIN
        if method in methods:
            need = methods[method]
            return self.metrics if need == METRICS else need
        if method == "OPTIONS" or not hasattr(resource, "on_" + method.lower()):
            return OPEN  # falcon answers (OPTIONS, 405) without running a responder
        return ADMIN

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        """Authenticate and authorise before the responder runs (and before any body is read)."""
        need = self.requirement(req.uri_template, req.method, resource)
        if need is OPEN:
            req.context.principal = NOBODY if self.tokens else ANONYMOUS
            return
        principal = self.authenticate(req.get_header("Authorization"))
        if _RANK[principal.role] < _RANK[need]:
            raise Forbidden(f"the {principal.role!r} role may not {req.method} {req.uri_template}; it needs {need!r}")
        req.context.principal = principal


def principal_of(req: falcon.Request) -> Principal:
    """The request's principal (set by AuthMiddleware)."""
    return getattr(req.context, "principal", NOBODY)


def client_key(req: falcon.Request) -> str:
    """Whom per-client limits (streams, queued jobs) count against: the token's name if authenticated, else
    the client address."""
    name = principal_of(req).name
    return f"token:{name}" if name else f"addr:{req.remote_addr}"


def visible_job(req: falcon.Request, engine: Any, job_id: str) -> Any:
    """The job, if this request's principal may see it; otherwise the same 404 as for an unknown id."""
    job = engine.get(job_id)
    if not principal_of(req).sees(job.owner):
        raise JobNotFound(f"no job with id {job_id!r} (unknown, or its record has expired)")
    return job


def visible_pile(req: falcon.Request, engine: Any, pile_id: str) -> Any:
    """The pile, if this request's principal may see it; otherwise the same 404 as for an unknown id."""
    pile = engine.get_pile(pile_id)
    if not principal_of(req).sees(pile.owner):
        raise PileNotFound(f"no pile with id {pile_id!r} (unknown, or its records have expired)")
    return pile

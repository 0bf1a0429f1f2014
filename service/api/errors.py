"""Problems as types, and the one mapping from the engine's domain errors to RFC 9457 problem documents.

Resources raise these problems; the engine raises `service.engine.errors`, which `problem_for` maps here
(status, type, title, headers, extra members, and the request's field paths); `service.api.app` renders
every one (and falcon's own HTTP errors) as `application/problem+json`. No status code is chosen elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..engine import errors as domain

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://greenpool.dev/problems/"


class Problem(Exception):
    """An error a client can act on: an HTTP status, a short title, a detail, and extra members."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        body = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status}
        body["detail"] = self.detail
        body.update(self.extra)
        return body


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class JobNotFound(Problem):
    status, title, slug = 404, "Job Not Found", "job-not-found"


class PileNotFound(Problem):
    status, title, slug = 404, "Pile Not Found", "pile-not-found"


class PileClosed(Problem):
    status, title, slug = 409, "Pile Closed", "pile-closed"


class PoolNotFound(Problem):
    status, title, slug = 404, "Pool Not Found", "pool-not-found"


class PoolInUse(Problem):
    """409: the pool is `default`, or has jobs queued or running: it cannot be deleted now."""

    status, title, slug = 409, "Pool In Use", "pool-in-use"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class JobAlreadyEnded(Problem):
    status, title, slug = 409, "Job Already Ended", "job-already-ended"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class ValidationFailed(Problem):
    """422: the body parsed but its content is wrong; `errors` lists `{field, message}` pairs."""

    status, title, slug = 422, "Validation Failed", "validation-failed"

    def __init__(self, detail: str, errors: list[dict[str, str]]):
        super().__init__(detail, errors=errors)


class UnknownTaskProblem(ValidationFailed):
    """422: the job names a task this server does not have."""

    title, slug = "Unknown Task", "unknown-task"


class UnknownPoolProblem(ValidationFailed):
    """422: the job names (or its task declares) a pool this server does not have."""

    title, slug = "Unknown Pool", "unknown-pool"


class QueueFull(Problem):
    status, title, slug = 429, "Queue Full", "queue-full"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class Draining(Problem):
    status, title, slug = 503, "Draining", "draining"

    def __init__(self, detail: str = "The server is shutting down and accepts no new work."):
        super().__init__(detail, headers={"Retry-After": "5"})


class StoreUnavailable(Problem):
    status, title, slug = 503, "Store Unavailable", "store-unavailable"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class Unauthorized(Problem):
    """401: no bearer token, or one that is not configured; carries the `WWW-Authenticate` challenge."""

    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, error: str | None = None):
        challenge = 'Bearer realm="greenpool"' + (f', error="{error}"' if error else "")
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class IdempotencyKeyReused(ValidationFailed):
    """422: an `Idempotency-Key` already used (by this token) for a request with a different body."""

    title, slug = "Idempotency Key Reused", "idempotency-key-reused"


_MAX_ERRORS_SHOWN = 50  # field errors listed in one problem (the detail names the first five)


def problem_for(error: domain.EngineError, prefixes: Sequence[str] | None = None) -> Problem:
    """The problem document for a domain error; `prefixes[i]` names job `i` of a batch in field paths
    (`jobs[3]` gives `jobs[3].args.x`)."""
    return _MAPPING[type(error)](error, prefixes)


def _fields(error: Any, prefixes: Sequence[str] | None) -> list[dict[str, str]]:
    """The error's `{field, message}` pairs, fields named as in the request."""
    return [{"field": _path(e, prefixes), "message": e.message} for e in error.errors]


def _invalid(error: Any, prefixes: Sequence[str] | None) -> Problem:
    errors = _fields(error, prefixes)
    if error.task is not None:  # one job
        fields = ", ".join(e["field"] for e in errors)
        return ValidationFailed(f"invalid arguments for task {error.task!r}: {fields}", errors)
    shown = errors[:_MAX_ERRORS_SHOWN]
    detail = f"{len(errors)} invalid job(s): " + ", ".join(e["field"] for e in shown[:5])
    return ValidationFailed(detail, shown)


def _path(error: domain.FieldError, prefixes: Sequence[str] | None) -> str:
    prefix = "" if error.index is None or prefixes is None else prefixes[error.index]
    return f"{prefix}.{error.field}" if prefix else error.field


_MAPPING: dict[type, Callable[[Any, Sequence[str] | None], Problem]] = {
    domain.QueueFull: lambda e, _: QueueFull(str(e), retry_after=e.retry_after),
    domain.TooLarge: lambda e, _: PayloadTooLarge(str(e), limit=e.limit, unit="jobs"),
    domain.Draining: lambda e, _: Draining(str(e)),
    domain.StoreUnavailable: lambda e, _: StoreUnavailable(str(e), e.retry_after),
    domain.JobNotFound: lambda e, _: JobNotFound(str(e)),
    domain.PileNotFound: lambda e, _: PileNotFound(str(e)),
    domain.JobAlreadyEnded: lambda e, _: JobAlreadyEnded(str(e), job_status=e.status),
    domain.PileClosed: lambda e, _: PileClosed(str(e)),
    domain.UnknownTask: lambda e, p: UnknownTaskProblem(str(e), _fields(e, p)),
    domain.InvalidArguments: _invalid,
    domain.PoolNotFound: lambda e, _: PoolNotFound(str(e), pool=e.name),
    domain.PoolInUse: lambda e, _: PoolInUse(str(e), pool=e.name, running=e.running, queued=e.queued),
    domain.UnknownPool: lambda e, p: UnknownPoolProblem(str(e), _fields(e, p)),
}

"""Errors as types, and their one mapping to RFC 9457 problem documents.

Resources and the engine raise these; `service.app` renders every one (and falcon's own HTTP errors) as
`application/problem+json`. No status code is chosen anywhere else.
"""

from __future__ import annotations

from typing import Any

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
    slug = "unknown-task"


class QueueFull(Problem):
    status, title, slug = 429, "Queue Full", "queue-full"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class Draining(Problem):
    status, title, slug = 503, "Draining", "draining"

    def __init__(self, detail: str = "The server is shutting down and accepts no new work."):
        super().__init__(detail, headers={"Retry-After": "5"})


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

    slug = "idempotency-key-reused"

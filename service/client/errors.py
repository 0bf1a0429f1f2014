"""The client's errors: one exception per problem status the server answers, each carrying the RFC 9457
problem document."""

from __future__ import annotations

from typing import Any

import requests

__all__ = [
    "BadRequest", "Conflict", "Forbidden", "GreenpoolError", "JobFailed", "NotFound", "PayloadTooLarge",
    "QueueFull", "Unauthorized", "Unavailable", "ValidationError", "error_for",
]  # fmt: skip


class GreenpoolError(Exception):
    """An error answer from the server; `.problem` is its problem document and `.status` its HTTP status."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.status: int | None = problem.get("status")
        self.title: str = problem.get("title") or "Error"
        self.detail: str = problem.get("detail") or self.title
        super().__init__(f"{self.status} {self.title}: {self.detail}" if self.status else self.detail)


class BadRequest(GreenpoolError):
    """400: a malformed request (bad JSON, bad query parameter)."""


class Unauthorized(GreenpoolError):
    """401: no or an unknown bearer token."""


class Forbidden(GreenpoolError):
    """403: the token's role does not allow this."""


class NotFound(GreenpoolError):
    """404: no such job, pile or route (unknown, or its record expired)."""


class Conflict(GreenpoolError):
    """409: the job already ended, or the pile is closed."""


class PayloadTooLarge(GreenpoolError):
    """413: the request body is over the server's limit."""

    @property
    def jobs_limit(self) -> int | None:
        """The most jobs one request may hold, when that is the limit passed (`unit: jobs`); else None."""
        limit = self.problem.get("limit")
        ok = self.problem.get("unit") == "jobs" and isinstance(limit, int) and limit >= 1
        return limit if ok else None


class ValidationError(GreenpoolError):
    """422: the body's content is wrong; `.errors` lists `{field, message}` pairs."""

    @property
    def errors(self) -> list[dict[str, str]]:
        """The `{field, message}` pairs of the problem document."""
        return list(self.problem.get("errors") or [])


class QueueFull(GreenpoolError):
    """429: the submit queue is full; retry after `.retry_after` seconds."""

    @property
    def retry_after(self) -> int | None:
        """Seconds the server suggests waiting (problem member, else the Retry-After header)."""
        value = self.problem.get("retry_after")
        return None if value is None else int(value)


class Unavailable(GreenpoolError):
    """503: the server is draining (shutting down) and accepts no new work."""


class JobFailed(GreenpoolError):
    """A mapped item whose job did not succeed; `.record` is its result record."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        error = record.get("error") or {}
        detail = f"item {record.get('index')} {record.get('status')}: {error.get('type')}: {error.get('message')}"
        super().__init__({"title": "Job Failed", "detail": detail, "status": None})


_BY_STATUS: dict[int, type[GreenpoolError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: QueueFull,
    503: Unavailable,
}


def error_for(resp: requests.Response) -> GreenpoolError:
    """The typed exception for an error response (a problem document is synthesised if the body is not one)."""
    try:
        problem = resp.json()
        if not isinstance(problem, dict):
            raise ValueError("not an object")
    except ValueError:
        problem = {"title": resp.reason or "Error", "detail": resp.text[:500] or resp.reason or "no detail"}
    problem.setdefault("status", resp.status_code)
    problem.setdefault("title", resp.reason or "Error")
    if "retry_after" not in problem and resp.headers.get("Retry-After", "").isdigit():
        problem["retry_after"] = int(resp.headers["Retry-After"])
    return _BY_STATUS.get(resp.status_code, GreenpoolError)(problem)

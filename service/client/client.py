"""A small Python client for the greenpool HTTP API, on `requests`.

    from service.client import Client

    with Client("http://127.0.0.1:8000") as gp:
        job = gp.submit("echo", {"hello": "world"}, wait=5)
        for record in gp.pile("sleep", items=[{"seconds": 0.1}] * 10):
            print(record["index"], record["status"])
        assert list(gp.map("echo", [{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]

Every error answer becomes a typed exception carrying the RFC 9457 problem document (`GreenpoolError` and
its subclasses). Result streams (`Pile` iteration, `map`) resume transparently when a connection drops: the
client remembers the last stream position it received and reconnects with `?after=N`, so every record is
yielded exactly once; retries are bounded and back off exponentially.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import requests

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "GreenpoolError",
    "JobFailed",
    "NotFound",
    "Pile",
    "PayloadTooLarge",
    "QueueFull",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
MAX_WAIT = 60.0  # the server's longest ?wait= (GREENPOOL_MAX_WAIT default)
# What a dropped connection looks like; a body cut inside the headers reads as empty, so also bad JSON.
_STREAM_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.JSONDecodeError,
)


# -- errors -------------------------------------------------------------------------------------------
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


# -- the client ---------------------------------------------------------------------------------------
class Client:
    """One `requests.Session` to one greenpool server; a method per endpoint."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 10.0,
        *,
        stream_timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.stream_timeout = stream_timeout  # longest silence on a result stream (the server beats every 15 s)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    # -- plumbing -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, extra_timeout: float = 0.0, **kwargs: Any) -> requests.Response:
        """One request; raises the typed error for a 4xx/5xx answer."""
        kwargs.setdefault("timeout", self.timeout + extra_timeout)
        resp = self.session.request(method, self.base_url + path, **kwargs)
        if resp.status_code >= 400:
            raise error_for(resp)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def _sleep_before_retry(self, attempt: int) -> None:
        time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    # -- jobs -----------------------------------------------------------------------------------------
    def submit(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
        wait: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job; with `wait`, return once it ended or `wait` seconds passed (long-polling past 60 s).

        With `idempotency_key`, a retry (same key, same job) returns the job the first request created.
        """
        body: dict[str, Any] = {"task": task, "args": args or {}}
        if timeout is not None:
            body["timeout"] = timeout
        started = time.monotonic()
        params = None if wait is None else {"wait": min(wait, MAX_WAIT)}
        headers = _idempotency(idempotency_key)
        job = self._json(
            "POST", "/v1/jobs", json=body, params=params, headers=headers, extra_timeout=min(wait or 0, MAX_WAIT)
        )
        if wait is not None and job["status"] not in TERMINAL and wait > MAX_WAIT:
            return self.wait(job["id"], wait - (time.monotonic() - started))
        return job

    def get(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        """The job; with `wait` (≤ 60 s), long-poll until it ends or `wait` passes."""
        params = None if wait is None else {"wait": wait}
        return self._json("GET", f"/v1/jobs/{job_id}", params=params, extra_timeout=wait or 0)

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        """Long-poll (in ≤ 60 s slices) until the job ends or `timeout` passes; the job as last seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            job = self.get(job_id, wait=max(0.0, min(MAX_WAIT, left)))
            if job["status"] in TERMINAL or deadline - time.monotonic() <= 0:
                return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (a queued one never starts, a running one is killed); Conflict if it already ended."""
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def jobs(self, status: str | None = None, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every recent job, newest first (optionally of one `status`), fetched `limit` per page by cursor."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        for _ in range(1_000_000):  # bounded: a page is never empty while a cursor follows
            page = self._json("GET", "/v1/jobs", params=params)
            yield from page["jobs"]
            if not page.get("next_cursor") or not page["jobs"]:
                return
            params["cursor"] = page["next_cursor"]

    # -- piles and map --------------------------------------------------------------------------------
    def pile(
        self,
        task: str | None = None,
        items: Iterable[dict[str, Any]] | None = None,
        jobs: Iterable[dict[str, Any]] | None = None,
        open: bool = False,
        order: str = "completion",
        timeout: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Pile:
        """Create a pile (`task` + `items`, or `jobs` of `{task, args, timeout?}`); iterate it for its records.

        With `idempotency_key`, a retry (same key, same body) returns the pile the first request created.
        """
        body = _pile_body(task, items, jobs, timeout)
        if open:
            body["open"] = True
        summary = self._json("POST", "/v1/piles", json=body, headers=_idempotency(idempotency_key))
        return Pile(self, summary["id"], order=order, summary=summary)

    def get_pile(self, pile_id: str, order: str = "completion") -> Pile:
        """A handle on an existing pile (NotFound if unknown or expired)."""
        return Pile(self, pile_id, order=order, summary=self._json("GET", f"/v1/piles/{pile_id}"))

    def map_records(
        self, task: str, items: Iterable[dict[str, Any]], order: str = "submitted", timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """`POST /v1/map`: each item's result record (`{index, job_id, status, result, error}`), resumable."""
        body: dict[str, Any] = {"task": task, "items": list(items), "order": order}
        if timeout is not None:
            body["timeout"] = timeout
        resp = self.session.post(
            self.base_url + "/v1/map",
            json=body,
            stream=True,
            timeout=(self.timeout, self.stream_timeout),
        )
        if resp.status_code >= 400:
            try:
                raise error_for(resp)
            finally:
                resp.close()
        location = resp.headers.get("Content-Location", "")
        pile_id = location.rstrip("/").rsplit("/", 1)[-1] if location else None
        stream = _ResultStream(self, pile_id, order)
        yield from stream.follow(first=resp)

    def map(
        self, task: str, items: Iterable[dict[str, Any]], order: str = "submitted", timeout: float | None = None
    ) -> Iterator[Any]:
        """Like `builtins.map`: each item's result (in input order by default); JobFailed for a failed item."""
        for record in self.map_records(task, items, order, timeout):
            if record["status"] != "succeeded":
                raise JobFailed(record)
            yield record["result"]

    # -- pool, tasks, health --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """`GET /v1/pool`: size, running, free, waiting, queued and the job counters."""
        return self._json("GET", "/v1/pool")

    def resize(self, size: int) -> dict[str, Any]:
        """`PATCH /v1/pool {size}`: change how many jobs run at once; returns the new stats."""
        return self._json("PATCH", "/v1/pool", json={"size": size})

    def tasks(self) -> list[dict[str, Any]]:
        """The registered tasks and their argument schemas."""
        return self._json("GET", "/v1/tasks")["tasks"]

    def health(self) -> dict[str, Any]:
        """`GET /healthz` (alive)."""
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        """`GET /readyz` (Unavailable while draining)."""
        return self._json("GET", "/readyz")


class Pile:
    """A pile on the server: iterate it for result records as they arrive; add to it and close it when open."""

    def __init__(
        self, client: Client, pile_id: str, order: str = "completion", summary: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.id = pile_id
        self.order = order
        self.last_summary = summary or {}
        self._stream = _ResultStream(client, pile_id, order)

    def __repr__(self) -> str:
        return f"<Pile {self.id} order={self.order}>"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Result records from where this handle's stream last stopped (a second loop continues, never repeats)."""
        return self._stream.follow()

    @property
    def position(self) -> int:
        """The last stream position received (-1 before the first record)."""
        return self._stream.position

    def results(self, order: str | None = None, after: int = -1) -> Iterator[dict[str, Any]]:
        """A fresh stream of records from position `after + 1` (in `order`, default this pile's)."""
        stream = _ResultStream(self.client, self.id, order or self.order)
        stream.position = after
        return stream.follow()

    def add(
        self,
        task: str | None = None,
        items: Iterable[dict[str, Any]] | None = None,
        jobs: Iterable[dict[str, Any]] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Add jobs to an open pile (Conflict if closed); the summary with `added: [{index, job_id}]`."""
        summary = self.client._json("POST", f"/v1/piles/{self.id}/jobs", json=_pile_body(task, items, jobs, timeout))
        self.last_summary = summary
        return summary

    def close(self) -> dict[str, Any]:
        """Close the pile: its streams end once every job has ended."""
        self.last_summary = self.client._json("POST", f"/v1/piles/{self.id}/close")
        return self.last_summary

    def summary(self) -> dict[str, Any]:
        """`GET /v1/piles/{id}`: size, done, succeeded, failed, cancelled, timed_out, pending, closed, readers."""
        self.last_summary = self.client._json("GET", f"/v1/piles/{self.id}")
        return self.last_summary


class _ResultStream:
    """Follows one pile's NDJSON result stream, resuming after drops from the last position received."""

    def __init__(self, client: Client, pile_id: str | None, order: str) -> None:
        self.client = client
        self.pile_id = pile_id
        self.order = order
        self.position = -1  # last stream position received; a record's position is its line number

    def _open(self) -> requests.Response:
        client = self.client
        params: dict[str, Any] = {"order": self.order}
        if self.position >= 0:
            params["after"] = self.position
        resp = client.session.get(
            f"{client.base_url}/v1/piles/{self.pile_id}/results",
            params=params,
            headers={"Accept": "application/x-ndjson"},
            stream=True,
            timeout=(client.timeout, client.stream_timeout),
        )
        if resp.status_code >= 400:
            try:
                raise error_for(resp)
            finally:
                resp.close()
        return resp

    def _complete(self) -> bool:
        """After a stream ended normally: is the pile closed, with no job pending and every record received?"""
        summary = self.client._json("GET", f"/v1/piles/{self.pile_id}")
        return bool(summary["closed"]) and summary["pending"] == 0 and self.position + 1 >= summary["size"]

    def follow(self, first: requests.Response | None = None) -> Iterator[dict[str, Any]]:
        """Yield records from `self.position + 1` on until the pile is complete, reconnecting after drops."""
        failures = 0
        resp = first
        while True:
            error: Exception | None = None
            try:
                if resp is None:
                    resp = self._open()
                for record in self._records(resp):
                    failures = 0  # progress: the retry budget is per silence, not per stream
                    yield record
            except _STREAM_ERRORS as exc:
                error = exc
            finally:
                if resp is not None:
                    resp.close()
                resp = None
            if self.pile_id is None:  # a map answer without Content-Location cannot resume
                if error is not None:
                    raise error
                return
            if error is None:
                try:
                    if self._complete():
                        return
                except _STREAM_ERRORS as exc:
                    error = exc
            failures += 1
            if failures > self.client.max_retries:
                if error is not None:
                    raise error
                detail = f"pile {self.pile_id}: the result stream kept ending before the pile was complete"
                raise GreenpoolError({"title": "Stream Incomplete", "status": None, "detail": detail})
            self.client._sleep_before_retry(failures)

    def _records(self, resp: requests.Response) -> Iterator[dict[str, Any]]:
        """Records of one response; a line that is not whole JSON means the connection was cut mid-record."""
        for line in resp.iter_lines(chunk_size=None):
            if not line.strip():
                continue  # heartbeat
            try:
                record = json.loads(line)
            except ValueError:
                raise requests.exceptions.ChunkedEncodingError(f"truncated record: {line[:80]!r}") from None
            self.position += 1
            yield record


def _idempotency(key: str | None) -> dict[str, str] | None:
    """The Idempotency-Key header for `key` (None: no header)."""
    return None if key is None else {"Idempotency-Key": key}


def _pile_body(
    task: str | None, items: Iterable[dict[str, Any]] | None, jobs: Iterable[dict[str, Any]] | None,
    timeout: float | None,
) -> dict[str, Any]:  # fmt: skip
    """`{task, items, timeout?}` or `{jobs}` from the keyword arguments (exactly one shape)."""
    if (jobs is None) == (items is None):
        raise TypeError("give either task and items, or jobs")
    if jobs is not None:
        if task is not None or timeout is not None:
            raise TypeError("with jobs, give each job its own task and timeout")
        return {"jobs": list(jobs)}
    if task is None:
        raise TypeError("items need a task")
    body: dict[str, Any] = {"task": task, "items": list(items or [])}
    if timeout is not None:
        body["timeout"] = timeout
    return body

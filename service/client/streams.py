"""Piles and result streams on the client: NDJSON records followed across dropped connections.

A stream remembers the last position it received and reconnects with `?after=N`, so every record is yielded
exactly once; retries are bounded and back off exponentially (the `Client`'s settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import requests

from .errors import GreenpoolError, error_for

__all__ = ["STREAM_ERRORS", "Pile", "ResultStream", "job_options", "pile_body"]

# What a dropped connection looks like; a body cut inside the headers reads as empty, so also bad JSON.
STREAM_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.JSONDecodeError,
)


class Pile:
    """A pile on the server: iterate it for result records as they arrive; add to it and close it when open."""

    def __init__(
        self, client: Any, pile_id: str, order: str = "completion", summary: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.id = pile_id
        self.order = order
        self.last_summary = summary or {}
        self._stream = ResultStream(client, pile_id, order)

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
        stream = ResultStream(self.client, self.id, order or self.order)
        stream.position = after
        return stream.follow()

    def add(
        self,
        task: str | None = None,
        items: Iterable[dict[str, Any]] | None = None,
        jobs: Iterable[dict[str, Any]] | None = None,
        timeout: float | None = None,
        pool: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Add jobs to an open pile (Conflict if closed); the summary with `added: [{index, job_id}]`.
        `options`: `retries`, `retry_backoff`, `delay` for every item (with `task` and `items`)."""
        body = pile_body(task, items, jobs, timeout, pool, **options)
        summary = self.client._json("POST", f"/v1/piles/{self.id}/jobs", json=body)
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


class ResultStream:
    """Follows one pile's NDJSON result stream, resuming after drops from the last position received."""

    def __init__(self, client: Any, pile_id: str | None, order: str) -> None:
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
            except STREAM_ERRORS as exc:
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
                except STREAM_ERRORS as exc:
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


def pile_body(
    task: str | None, items: Iterable[dict[str, Any]] | None, jobs: Iterable[dict[str, Any]] | None,
    timeout: float | None, pool: str | None = None, **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """`{task, items, timeout?, pool?, retries?, retry_backoff?, delay?}` or `{jobs}` from the keyword
    arguments (exactly one shape)."""
    if (jobs is None) == (items is None):
        raise TypeError("give either task and items, or jobs")
    if jobs is not None:
        if task is not None or timeout is not None or pool is not None or any(v is not None for v in options.values()):
            raise TypeError("with jobs, give each job its own task, timeout, pool and options")
        return {"jobs": list(jobs)}
    if task is None:
        raise TypeError("items need a task")
    return job_options({"task": task, "items": list(items or [])}, timeout, pool, **options)


def job_options(body: dict[str, Any], timeout: float | None, pool: str | None, retries: int | None = None,
                retry_backoff: float | None = None, delay: float | None = None) -> dict[str, Any]:  # fmt: skip
    """`body` with `timeout`, `pool` and the job options (design §3: `retries`, `retry_backoff`, `delay`)
    set where given (None: the server's default)."""
    given = {"timeout": timeout, "pool": pool, "retries": retries, "retry_backoff": retry_backoff, "delay": delay}
    body.update((name, value) for name, value in given.items() if value is not None)
    return body

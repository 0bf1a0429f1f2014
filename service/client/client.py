"""A small Python client for the greenpool HTTP API, on `requests`.

    from service.client import Client

    with Client("http://127.0.0.1:8000") as gp:
        job = gp.submit("echo", {"hello": "world"}, wait=5)
        for record in gp.pile("sleep", items=[{"seconds": 0.1}] * 10):
            print(record["index"], record["status"])
        assert list(gp.map("echo", [{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]

Every error answer raises a typed exception (`errors`); result streams (`Pile` iteration, `map`) resume
transparently when a connection drops (`streams`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import requests

from .errors import JobFailed, PayloadTooLarge, QueueFull, error_for
from .split import SplitPile, shifted
from .streams import Pile, ResultStream, job_options, pile_body

__all__ = ["DEFAULT_URL", "MAX_WAIT", "TERMINAL", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
MAX_WAIT = 60.0  # the server's longest ?wait= (GREENPOOL_MAX_WAIT default)


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
        busy_retries: int = 3,
        max_busy_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.stream_timeout = stream_timeout  # longest silence on a result stream (the server beats every 15 s)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.busy_retries = busy_retries  # a 429 is retried after its Retry-After, this many times at most,
        self.max_busy_wait = max_busy_wait  # and only while the waits add up to no more than this (seconds)
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
        """One request; raises the typed error for a 4xx/5xx answer. A 429 (nothing was accepted) is sent
        again after its Retry-After, at most `busy_retries` times and `max_busy_wait` seconds in all."""
        kwargs.setdefault("timeout", self.timeout + extra_timeout)
        waited, attempt = 0.0, 0
        while True:
            resp = self.session.request(method, self.base_url + path, **kwargs)
            if resp.status_code < 400:
                return resp
            error = error_for(resp)
            delay = error.retry_after if isinstance(error, QueueFull) else None
            if delay is None or attempt >= self.busy_retries or waited + delay > self.max_busy_wait:
                raise error
            attempt, waited = attempt + 1, waited + delay
            time.sleep(delay)

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
        pool: str | None = None,
        retries: int | None = None,
        retry_backoff: float | None = None,
        delay: float | None = None,
    ) -> dict[str, Any]:
        """Submit a job (to `pool`: None for its task's, else `default`); with `wait`, return once it ended or
        `wait` seconds passed (long-polling past 60 s).

        With `idempotency_key`, a retry (same key, same job) returns the job the first request created.
        `retries`, `retry_backoff` and `delay` are the job's options (design §3; None: the server's default).
        """
        body = job_options({"task": task, "args": args or {}}, timeout, pool, retries, retry_backoff, delay)
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
        pool: str | None = None,
        **options: Any,
    ) -> Pile | SplitPile:
        """Create a pile (`task` + `items` in `pool`, or `jobs` of `{task, args, timeout?, pool?, retries?…}`);
        iterate it for its records. `options` (`retries`, `retry_backoff`, `delay`) apply to every item.

        With `idempotency_key`, a retry (same key, same body) returns the pile the first request created.
        A closed pile with more jobs than the server takes in one request becomes several (a `SplitPile`;
        with a key, part n uses `<key>.<n>`).
        """
        body = pile_body(task, items, jobs, timeout, pool, **options)
        if open:
            body["open"] = True
        try:
            summary = self._json("POST", "/v1/piles", json=body, headers=_idempotency(idempotency_key))
        except PayloadTooLarge as exc:
            members = "items" if "items" in body else "jobs"
            limit = exc.jobs_limit
            if open or limit is None or len(body[members]) <= limit:
                raise
            return self._split_pile(body, members, limit, order, idempotency_key)
        return Pile(self, summary["id"], order=order, summary=summary)

    def _split_pile(self, body: dict[str, Any], members: str, limit: int, order: str,
                    key: str | None) -> SplitPile:  # fmt: skip
        """One pile per `limit` members of `body`, created in turn."""
        parts = []
        everything = body[members]
        for n, start in enumerate(range(0, len(everything), limit)):
            part = {**body, members: everything[start : start + limit]}
            headers = _idempotency(None if key is None else f"{key}.{n}")
            summary = self._json("POST", "/v1/piles", json=part, headers=headers)
            parts.append((start, Pile(self, summary["id"], order=order, summary=summary)))
        return SplitPile(parts, order)

    def get_pile(self, pile_id: str, order: str = "completion") -> Pile:
        """A handle on an existing pile (NotFound if unknown or expired)."""
        return Pile(self, pile_id, order=order, summary=self._json("GET", f"/v1/piles/{pile_id}"))

    def map_records(
        self, task: str, items: Iterable[dict[str, Any]], order: str = "submitted", timeout: float | None = None,
        pool: str | None = None, **options: Any,
    ) -> Iterator[dict[str, Any]]:  # fmt: skip
        """`POST /v1/map`: each item's result record (`{index, job_id, status, result, error}`), resumable;
        `options`: `retries`, `retry_backoff`, `delay` for every item.
        More items than the server maps in one request are sent as several maps in turn (their records in
        the whole request's order, `index` counting from its first item)."""
        body = job_options({"task": task, "items": list(items), "order": order}, timeout, pool, **options)
        try:
            resp = self._open_map(body)
        except PayloadTooLarge as exc:
            limit = exc.jobs_limit
            if limit is None or len(body["items"]) <= limit:
                raise
            everything = body["items"]
            for start in range(0, len(everything), limit):
                part = {**body, "items": everything[start : start + limit]}
                resp = self._open_map(part)
                for record in self._map_stream(resp, order):
                    yield shifted(record, start)
            return
        yield from self._map_stream(resp, order)

    def _open_map(self, body: dict[str, Any]) -> requests.Response:
        """POST /v1/map and return the streaming response (raises the typed error of an error answer)."""
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
        return resp

    def _map_stream(self, resp: requests.Response, order: str) -> Iterator[dict[str, Any]]:
        """The records of one map answer, resumed through its pile (`Content-Location`) if it drops."""
        location = resp.headers.get("Content-Location", "")
        pile_id = location.rstrip("/").rsplit("/", 1)[-1] if location else None
        yield from ResultStream(self, pile_id, order).follow(first=resp)

    def map(
        self, task: str, items: Iterable[dict[str, Any]], order: str = "submitted", timeout: float | None = None,
        pool: str | None = None, **options: Any,
    ) -> Iterator[Any]:  # fmt: skip
        """Like `builtins.map`: each item's result (in input order by default); JobFailed for a failed item;
        `options`: `retries`, `retry_backoff`, `delay` for every item."""
        for record in self.map_records(task, items, order, timeout, pool, **options):
            if record["status"] != "succeeded":
                raise JobFailed(record)
            yield record["result"]

    # -- pools, tasks, health -------------------------------------------------------------------------
    def stats(self, pool: str | None = None) -> dict[str, Any]:
        """`GET /v1/pool` (or `/v1/pools/{pool}`): size, running, free, waiting, queued and the job counters."""
        return self._json("GET", "/v1/pool" if pool is None else f"/v1/pools/{quote(pool, safe='')}")

    def pools(self) -> list[dict[str, Any]]:
        """`GET /v1/pools`: every named pool's stats with its `name`, `default` first."""
        return self._json("GET", "/v1/pools")["pools"]

    def resize(self, size: int, pool: str | None = None) -> dict[str, Any]:
        """Change how many jobs of `pool` (None: `default`) run at once, creating the pool if it does not exist
        (`PUT /v1/pools/{pool}`; `PATCH /v1/pool` for None); returns its new stats."""
        if pool is None:
            return self._json("PATCH", "/v1/pool", json={"size": size})
        return self._json("PUT", f"/v1/pools/{quote(pool, safe='')}", json={"size": size})

    def delete_pool(self, pool: str) -> None:
        """`DELETE /v1/pools/{pool}`: remove an idle pool (Conflict if busy, or for `default`)."""
        self.request("DELETE", f"/v1/pools/{quote(pool, safe='')}")

    def tasks(self) -> list[dict[str, Any]]:
        """The registered tasks and their argument schemas."""
        return self._json("GET", "/v1/tasks")["tasks"]

    def health(self) -> dict[str, Any]:
        """`GET /healthz` (alive)."""
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        """`GET /readyz` (Unavailable while draining)."""
        return self._json("GET", "/readyz")


def _idempotency(key: str | None) -> dict[str, str] | None:
    """The Idempotency-Key header for `key` (None: no header)."""
    return None if key is None else {"Idempotency-Key": key}

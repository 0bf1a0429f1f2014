"""`/v1/piles…` and `/v1/map`: groups of jobs whose results stream back as they finish."""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import falcon

from ...engine import COMPLETION, SUBMITTED, Engine, JobSpec, Pile
from ...engine.errors import InvalidArguments, UnknownTask
from ..auth import client_key, principal_of, visible_pile
from ..errors import BadRequest, PayloadTooLarge, Problem, ValidationFailed, problem_for
from ..idempotency import PILE, REPLAYED, IdempotencyStore
from ..streams import NDJSON, SSE, ndjson, sse
from .body import check_args_size, query_int, read_json_object
from .jobs import OPTION_FIELDS, parse_job_spec

_ORDERS = (COMPLETION, SUBMITTED)
_POSITION = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit() accepts '²')
T = TypeVar("T")


def parse_pile_body(
    body: dict, engine: Engine, extra: tuple[str, ...] = (), max_jobs: int | None = None
) -> tuple[list[JobSpec], list[str]]:
    """`{jobs: [{task, args, timeout?, pool?, options?}…]}` or `{task, items: [args…], timeout?, pool?,
    options?}` (options: `retries`, `retry_backoff`, `delay`, for every item) → specs and their field names;
    413 beyond `max_jobs` (default: `max_pile_size`)."""
    limit = engine.config.max_pile_size if max_jobs is None else max_jobs
    shared = ("task", "timeout", "pool", *OPTION_FIELDS)  # the fields `items` share
    allowed = {"jobs", "items", *shared, *extra}
    errors = [{"field": k, "message": "unknown field"} for k in body if k not in allowed]
    if ("jobs" in body) == ("items" in body):
        errors.append({"field": "jobs", "message": "give either `jobs` or `task` with `items`"})
    elif "jobs" in body:
        jobs = body["jobs"]
        if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
            errors.append({"field": "jobs", "message": "must be an array of {task, args, timeout?, pool?} objects"})
        elif any(k in body for k in shared):
            field = next(k for k in shared if k in body)
            field = "task" if field in ("timeout", "pool") else field
            message = "with `jobs`, give each job its own task, timeout, pool and options"
            errors.append({"field": field, "message": message})
        if not errors:
            _check_count(len(jobs), limit)
            fields = [f"jobs[{i}]" for i in range(len(jobs))]
            specs = []
            for job, field in zip(jobs, fields, strict=True):
                specs.append(parse_job_spec(job, engine, field + "."))
            return specs, fields
    else:
        items = body["items"]
        if not isinstance(items, list):
            errors.append({"field": "items", "message": "must be an array of argument objects"})
        if not errors:
            _check_count(len(items), limit)
            common = parse_job_spec({k: body[k] for k in shared if k in body}, engine)
            if not items and common.task not in engine.registry:  # no job to check it later: it must still exist
                raise problem_for(UnknownTask(common.task, engine.registry.names()))
            return [common._replace(args=args) for args in items], [f"items[{i}]" for i in range(len(items))]
    raise ValidationFailed("the pile is not valid: " + ", ".join(e["field"] for e in errors), errors)


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise PayloadTooLarge(f"{count} jobs in one request; the limit is {limit}", limit=limit, unit="jobs")


def _fielded(fields: list[str], call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, with the field paths of invalid jobs named as in the request (`fields[i]`)."""
    try:
        return call(*args, **kwargs)
    except InvalidArguments as exc:
        raise problem_for(exc, fields) from None


def _named_args(fields: list[str]) -> list[str]:
    """Where each job's args are: `jobs[i].args`, or the item itself (`items[i]`)."""
    return [f if f.startswith("items") else f + ".args" for f in fields]


class TooManyStreams(Problem):
    """429: this client (token, else address) already has `max_streams_per_client` result streams open."""

    status, title, slug = 429, "Too Many Streams", "too-many-streams"
    RETRY_AFTER = 5

    def __init__(self, detail: str):
        retry = self.RETRY_AFTER
        super().__init__(detail, headers={"Retry-After": str(retry)}, retry_after=retry)


class StreamSlots:
    """Open result streams per client: `pile results` and `map` answers count until their stream ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def check(self, client: str) -> None:
        """TooManyStreams if `client` may not open another stream now."""
        if self.open.get(client, 0) >= self.limit:
            raise TooManyStreams(
                f"{self.open[client]} result streams are open for this client; the limit is {self.limit}: "
                "close one (or let it end) and retry"
            )

    def acquire(self, client: str) -> Callable[[], None]:
        """Count one more stream for `client` (after `check`); returns its release (idempotent)."""
        self.check(client)
        self.open[client] = self.open.get(client, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self.open[client] - 1
                if left:
                    self.open[client] = left
                else:
                    del self.open[client]

        return release


_SLOTS: weakref.WeakKeyDictionary[Engine, StreamSlots] = weakref.WeakKeyDictionary()


def stream_slots(engine: Engine) -> StreamSlots:
    """The engine's stream counter (one per app)."""
    slots = _SLOTS.get(engine)
    if slots is None:
        slots = _SLOTS[engine] = StreamSlots(engine.config.max_streams_per_client)
    return slots


class _Released:
    """A response iterator that runs `release` once when closed, even if it never started."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release

    def __iter__(self) -> _Released:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Close the stream and free its slot."""
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        finally:
            self._release()


def stream(req: falcon.Request, resp: falcon.Response, engine: Engine, pile: Pile, order: str, after: int,
           heartbeat: float, slots: StreamSlots | None = None) -> None:  # fmt: skip
    """Make `resp` a chunked stream of the pile's results, as SSE if the client prefers it, else NDJSON
    (429 if the client has `max_streams_per_client` streams open already)."""
    release = slots.acquire(client_key(req)) if slots is not None else None
    encode, media = (sse, SSE) if req.client_prefers([NDJSON, SSE]) == SSE else (ndjson, NDJSON)
    resp.content_type = media
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Accel-Buffering", "no")
    batches = engine.follow(pile, order, after, heartbeat)
    chunks = _closing(encode(batches), batches)
    resp.stream = chunks if release is None else _Released(chunks, release)


def _closing(chunks: Iterator[bytes], batches: Iterator[Any]) -> Iterator[bytes]:
    """`chunks`, then close them and the batches they encode (which ends the pile's reader count)."""
    try:
        yield from chunks
    finally:  # runs when the stream ends or the client goes away (the server closes the iterator)
        chunks.close()  # type: ignore[attr-defined]
        batches.close()  # type: ignore[attr-defined]


def _order(req: falcon.Request, default: str) -> str:
    order = req.get_param("order") or default
    if order not in _ORDERS:
        raise BadRequest(f"query parameter 'order' must be one of {', '.join(_ORDERS)}", parameter="order")
    return order


def _after(req: falcon.Request) -> int:
    """The last stream position the client already has: `Last-Event-ID` header or `?after=`; -1 for none.
    `after` is checked even when the header wins (the document bounds it, whoever overrides it)."""
    after = query_int(req, "after", -1, 2**62, -1)
    header = req.get_header("Last-Event-ID")
    if header is not None:
        if not _POSITION.fullmatch(header.strip()):
            raise BadRequest("Last-Event-ID must be an event id from this stream", parameter="Last-Event-ID")
        return int(header)
    return after


class PilesResource:
    """POST creates a pile (closed unless `"open": true`)."""

    def __init__(self, engine: Engine, keys: IdempotencyStore | None = None) -> None:
        self.engine = engine
        self.keys = keys if keys is not None else IdempotencyStore(engine, engine.store.keys)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        owner, key = principal_of(req).name, self.keys.key(req)
        body = read_json_object(req, self.engine.config.max_body_bytes)
        specs, fields = parse_pile_body(body, self.engine, extra=("open",))
        check_args_size(req, self.engine.config.max_args_bytes, specs, _named_args(fields))
        is_open = body.get("open", False)
        if not isinstance(is_open, bool):
            raise ValidationFailed("the pile is not valid: open", [{"field": "open", "message": "must be a boolean"}])
        create, client = self.engine.create_pile, client_key(req)
        pile, replayed = self.keys.create(
            owner, key, PILE, body, lambda pile_id: _fielded(fields, create, specs, is_open, owner, pile_id, client)
        )
        if replayed:
            resp.set_header(REPLAYED, "true")
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/piles/{pile.id}"
        resp.media = self.engine.pile_summary(pile)


class PileResource:
    """GET summarises a pile: size, done, succeeded, failed, cancelled, timed_out, pending, closed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        resp.media = self.engine.pile_summary(visible_pile(req, self.engine, pile_id))


class PileJobsResource:
    """POST adds jobs to an open pile."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        pile = visible_pile(req, self.engine, pile_id)
        specs, fields = parse_pile_body(read_json_object(req, self.engine.config.max_body_bytes), self.engine)
        check_args_size(req, self.engine.config.max_args_bytes, specs, _named_args(fields))
        jobs = _fielded(fields, self.engine.add_to_pile, pile_id, specs, client_key(req))
        resp.status = falcon.HTTP_202
        added = [{"index": job.pile_index, "job_id": job.id} for job in jobs]
        resp.media = {**self.engine.pile_summary(pile), "added": added}


class PileCloseResource:
    """POST closes a pile: its streams end once every job has a result."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        visible_pile(req, self.engine, pile_id)
        resp.media = self.engine.pile_summary(self.engine.close_pile(pile_id))


class PileResultsResource:
    """GET streams result records as jobs finish (`?order=submitted` for input order; resumable)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        pile = visible_pile(req, self.engine, pile_id)
        heartbeat = self.engine.config.stream_heartbeat
        stream(req, resp, self.engine, pile, _order(req, COMPLETION), _after(req), heartbeat, stream_slots(self.engine))


class MapResource:
    """POST `{task, items, order?, timeout?, pool?}`: one round trip `imap` — a closed pile streamed in input order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body: dict[str, Any] = read_json_object(req, self.engine.config.max_body_bytes)
        order = body.get("order", SUBMITTED)
        if order not in _ORDERS:
            message = f"must be one of {', '.join(_ORDERS)}"
            raise ValidationFailed(f"the map is not valid: order {message}", [{"field": "order", "message": message}])
        if "jobs" in body:
            message = "map takes `task` and `items`, not `jobs`"
            raise ValidationFailed(f"the map is not valid: {message}", [{"field": "jobs", "message": message}])
        specs, fields = parse_pile_body(body, self.engine, extra=("order",), max_jobs=self.engine.config.max_map_items)
        check_args_size(req, self.engine.config.max_args_bytes, specs, _named_args(fields))
        stream_slots(self.engine).check(client_key(req))  # before the jobs exist: a 429 leaves nothing behind
        owner = principal_of(req).name
        pile = _fielded(fields, self.engine.create_pile, specs, owner=owner, client=client_key(req))
        resp.set_header("Content-Location", f"/v1/piles/{pile.id}")
        heartbeat = self.engine.config.stream_heartbeat
        stream(req, resp, self.engine, pile, order, -1, heartbeat, stream_slots(self.engine))

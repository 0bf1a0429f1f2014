"""`/v1/piles…` and `/v1/map`: groups of jobs whose results stream back as they finish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import falcon

from ..engine import Engine, JobSpec
from ..errors import BadRequest, ValidationFailed
from ..piles import COMPLETION, SUBMITTED, Pile
from ..streams import NDJSON, SSE, ndjson, sse
from .body import query_int, read_json_object
from .jobs import parse_job_spec

_ORDERS = (COMPLETION, SUBMITTED)
_POSITION = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit() accepts '²')


def parse_pile_body(body: dict, engine: Engine, extra: tuple[str, ...] = ()) -> tuple[list[JobSpec], list[str]]:
    """`{jobs: [{task, args, timeout?}…]}` or `{task, items: [args…], timeout?}` → specs and their field names."""
    allowed = {"jobs", "task", "items", "timeout", *extra}
    errors = [{"field": k, "message": "unknown field"} for k in body if k not in allowed]
    if ("jobs" in body) == ("items" in body):
        errors.append({"field": "jobs", "message": "give either `jobs` or `task` with `items`"})
    elif "jobs" in body:
        jobs = body["jobs"]
        if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
            errors.append({"field": "jobs", "message": "must be an array of {task, args, timeout?} objects"})
        elif "task" in body or "timeout" in body:
            errors.append({"field": "task", "message": "with `jobs`, give each job its own task and timeout"})
        if not errors:
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
            task, _, timeout = parse_job_spec({k: body[k] for k in ("task", "timeout") if k in body}, engine)
            return [(task, args, timeout) for args in items], [f"items[{i}]" for i in range(len(items))]
    raise ValidationFailed("the pile is not valid: " + ", ".join(e["field"] for e in errors), errors)


def stream(req: falcon.Request, resp: falcon.Response, pile: Pile, order: str, after: int, heartbeat: float) -> None:
    """Make `resp` a chunked stream of the pile's results, as SSE if the client prefers it, else NDJSON."""
    encode, media = (sse, SSE) if req.client_prefers([NDJSON, SSE]) == SSE else (ndjson, NDJSON)
    resp.content_type = media
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Accel-Buffering", "no")
    resp.stream = _counted(pile, encode(pile.follow(order, after, heartbeat)))


def _counted(pile: Pile, chunks: Iterator[bytes]) -> Iterator[bytes]:
    pile.readers += 1
    try:
        yield from chunks
    finally:  # runs when the stream ends or the client goes away (the server closes the iterator)
        pile.readers -= 1
        chunks.close()


def _order(req: falcon.Request, default: str) -> str:
    order = req.get_param("order") or default
    if order not in _ORDERS:
        raise BadRequest(f"query parameter 'order' must be one of {', '.join(_ORDERS)}", parameter="order")
    return order


def _after(req: falcon.Request) -> int:
    """The last stream position the client already has: `Last-Event-ID` header or `?after=`; -1 for none."""
    header = req.get_header("Last-Event-ID")
    if header is not None:
        if not _POSITION.fullmatch(header.strip()):
            raise BadRequest("Last-Event-ID must be an event id from this stream", parameter="Last-Event-ID")
        return int(header)
    return query_int(req, "after", -1, 2**62, -1)


class PilesResource:
    """POST creates a pile (closed unless `"open": true`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, self.engine.config.max_body_bytes)
        specs, fields = parse_pile_body(body, self.engine, extra=("open",))
        is_open = body.get("open", False)
        if not isinstance(is_open, bool):
            raise ValidationFailed("the pile is not valid: open", [{"field": "open", "message": "must be a boolean"}])
        pile = self.engine.create_pile(specs, fields, open=is_open)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/piles/{pile.id}"
        resp.media = pile.summary()


class PileResource:
    """GET summarises a pile: size, done, succeeded, failed, cancelled, timed_out, pending, closed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        resp.media = self.engine.get_pile(pile_id).summary()


class PileJobsResource:
    """POST adds jobs to an open pile."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        pile = self.engine.get_pile(pile_id)
        specs, fields = parse_pile_body(read_json_object(req, self.engine.config.max_body_bytes), self.engine)
        jobs = self.engine.add_to_pile(pile_id, specs, fields)
        resp.status = falcon.HTTP_202
        resp.media = {**pile.summary(), "added": [{"index": pile.index_of(j), "job_id": j.id} for j in jobs]}


class PileCloseResource:
    """POST closes a pile: its streams end once every job has a result."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        resp.media = self.engine.close_pile(pile_id).summary()


class PileResultsResource:
    """GET streams result records as jobs finish (`?order=submitted` for input order; resumable)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, pile_id: str) -> None:
        pile = self.engine.get_pile(pile_id)
        stream(req, resp, pile, _order(req, COMPLETION), _after(req), self.engine.config.stream_heartbeat)


class MapResource:
    """POST `{task, items, order?}`: one round trip `imap` — a closed pile streamed in input order."""

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
        specs, fields = parse_pile_body(body, self.engine, extra=("order",))
        pile = self.engine.create_pile(specs, fields)
        resp.set_header("Content-Location", f"/v1/piles/{pile.id}")
        stream(req, resp, pile, order, -1, self.engine.config.stream_heartbeat)

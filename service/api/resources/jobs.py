"""`/v1/jobs` and `/v1/jobs/{id}`: submit, long-poll, cancel, list."""

from __future__ import annotations

import re
from typing import Any

import falcon

from ...config import POOL_NAME, Config
from ...encoding import dumps
from ...engine import STATUSES, Engine, JobOptions, JobSpec
from ..auth import client_key, principal_of, visible_job
from ..errors import BadRequest, ValidationFailed
from ..idempotency import JOB, REPLAYED, IdempotencyStore
from .body import check_args_size, query_float, query_int, read_json_object

OPTION_FIELDS = ("retries", "retry_backoff", "delay")  # a job's options (design §3), each absent or null: the default
_SUBMIT_FIELDS = {"task", "args", "timeout", "pool", *OPTION_FIELDS}
POOL_MESSAGE = "must be a pool name: 1-64 of a-z 0-9 _ -"
_CURSOR = re.compile(r"[0-9]{1,19}")  # as the document's pattern states
_MAX_CURSOR = 2**63 - 1  # stores keep a job's sequence number in a signed 64-bit integer


def _send_json(resp: falcon.Response, document: Any) -> None:
    """Answer `document` as JSON, as `resp.media = document` would (the app's media type is JSON)."""
    resp.content_type = resp.options.default_media_type
    resp.data = dumps(document)


def parse_job_spec(body: dict, engine: Engine, prefix: str = "") -> JobSpec:
    """`{task, args?, timeout?, pool?, retries?, retry_backoff?, delay?}` checked for shape: the task name, its
    args object, timeout, pool and options (None when it gives none)."""
    errors = [{"field": prefix + k, "message": "unknown field"} for k in body if k not in _SUBMIT_FIELDS]
    task = body.get("task")
    if not isinstance(task, str) or not task:
        errors.append({"field": prefix + "task", "message": "required: the name of a registered task"})
    args = body.get("args", {})
    if not isinstance(args, dict):
        errors.append({"field": prefix + "args", "message": "must be a JSON object"})
    timeout = body.get("timeout")
    limit = engine.config.max_job_timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= limit
    ):
        errors.append({"field": prefix + "timeout", "message": f"must be a number of seconds in (0, {limit:g}]"})
    pool = body.get("pool")
    if pool is not None and not (isinstance(pool, str) and POOL_NAME.fullmatch(pool)):
        errors.append({"field": prefix + "pool", "message": POOL_MESSAGE})
    options = None
    if "retries" in body or "retry_backoff" in body or "delay" in body:
        options = parse_options(body, engine.config, prefix, errors)
    if errors:
        raise ValidationFailed("the job is not valid: " + ", ".join(e["field"] for e in errors), errors)
    return JobSpec(task, args, None if timeout is None else float(timeout), pool, options)


def parse_options(body: dict, config: Config, prefix: str, errors: list[dict[str, str]]) -> JobOptions | None:
    """`retries` (an integer 0..max_retries), `retry_backoff` (seconds 0..max_backoff) and `delay` (seconds
    0..max_delay), each absent or null for the default; a wrong one is added to `errors` by its field (and
    the answer is None)."""
    retries, retry_backoff, delay = (body.get(name) for name in OPTION_FIELDS)
    wrong = len(errors)
    if isinstance(retries, float) and retries.is_integer():  # `1.0` is an integer in JSON Schema's terms
        retries = int(retries)
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= config.max_retries
    ):
        errors.append({"field": prefix + "retries", "message": f"must be an integer from 0 to {config.max_retries}"})
    for name, value, limit in (("retry_backoff", retry_backoff, config.max_backoff),
                               ("delay", delay, config.max_delay)):  # fmt: skip
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= limit
        ):
            errors.append({"field": prefix + name, "message": f"must be a number of seconds from 0 to {limit:g}"})
    if len(errors) > wrong:
        return None
    return JobOptions(retries, None if retry_backoff is None else float(retry_backoff),
                      None if delay is None else float(delay))  # fmt: skip


class JobsResource:
    """POST submits a job (optionally waiting for its end); GET lists recent jobs."""

    def __init__(self, engine: Engine, keys: IdempotencyStore | None = None) -> None:
        self.engine = engine
        self.keys = keys if keys is not None else IdempotencyStore(engine, engine.store.keys)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        engine, owner = self.engine, principal_of(req).name
        wait = query_float(req, "wait", 0, engine.config.max_wait)
        key = self.keys.key(req)
        body = read_json_object(req, engine.config.max_body_bytes)
        task, args, timeout, pool, options = spec = parse_job_spec(body, engine)
        check_args_size(req, engine.config.max_args_bytes, [spec], ["args"])
        client = client_key(req)
        job, replayed = self.keys.create(
            owner, key, JOB, body,
            lambda job_id: engine.submit(task, args, timeout, owner, job_id, client, pool, options),
        )
        if replayed:
            resp.set_header(REPLAYED, "true")
        ended = wait is not None and engine.wait(job, wait)
        resp.status = falcon.HTTP_200 if ended else falcon.HTTP_202
        resp.location = f"/v1/jobs/{job.id}"
        _send_json(resp, job.to_dict())

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"query parameter 'status' must be one of {', '.join(STATUSES)}", parameter="status")
        limit = query_int(req, "limit", 1, 1000, 100)
        cursor = req.get_param("cursor")
        if cursor is not None and not _CURSOR.fullmatch(cursor):
            raise BadRequest("query parameter 'cursor' must be a value returned as next_cursor", parameter="cursor")
        before = None if cursor is None else min(int(cursor), _MAX_CURSOR)  # beyond every job: the first page
        jobs, next_seq = self.engine.list(status, limit, before, owner=principal_of(req).only_owner)
        _send_json(
            resp,
            {
                "jobs": [job.to_dict() for job in jobs],
                "next_cursor": None if next_seq is None else str(next_seq),
            },
        )


class JobResource:
    """GET reads one job (`?wait=S` long-polls until it ends); DELETE cancels it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        wait = query_float(req, "wait", 0, self.engine.config.max_wait)
        job = visible_job(req, self.engine, job_id)
        if wait:
            self.engine.wait(job, wait)
        _send_json(resp, job.to_dict())

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        visible_job(req, self.engine, job_id)
        _send_json(resp, self.engine.cancel(job_id).to_dict())

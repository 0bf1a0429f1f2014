"""Hooks for `schemathesis run` against a test server (SCHEMATHESIS_HOOKS=<this file>).

They keep cases quick and independent without changing what a case means (schemathesis revalidates a case
after `before_call`): a valid `Idempotency-Key` is made unique (a reused key with another body is a documented
422 that would read as a valid request refused), a valid `wait` is capped at 0.2 s, a valid `sleep` at 0.05 s,
an `http` job's URL points at a refused loopback port (no outbound traffic), a job's valid `pool` names
`default` (which pools exist is state, like which job ids do: an unknown one is a documented 422), a valid
`delay` and `retry_backoff` are capped at 0.05 s and `retries` at 1, and after `PATCH /v1/pool` or `PUT
/v1/pools/{name}` the pool gets its size back (a generated `size: 0` pauses it, and a map then streams
heartbeats for ever); a pile is closed before its results are streamed (a stream on an open pile lasts until
it is closed). The server's URL, the admin token and the pool size come from the environment of the run.

One more check, `fits_the_document`, holds every answer to the document as tests/contract does (what
schemathesis has no deserializer for included): each record of an NDJSON or SSE stream against its media
type's `x-greenpool-item-schema`, the YAML document against its schema, a problem's `status` against the
HTTP status.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import urllib.parse
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import requests
import schemathesis
import yaml
from requests.structures import CaseInsensitiveDict

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS), str(_TESTS / "contract")]  # this file is loaded by path, outside pytest
from openapi_contract import SPEC_PATH, Contract  # noqa: E402

_CONTRACT = Contract(yaml.safe_load(SPEC_PATH.read_text()))

_KEYS = itertools.count()
_KEY = re.compile(r"^[!-~]{1,255}$")
_POOL = re.compile(r"^[a-z0-9_-]{1,64}$")
_RETRIES = 1
_OPTION_MAX = {"delay": 604800, "retry_backoff": 300, "retries": 25}  # the documented maxima: beyond is invalid
_WAIT, _SLEEP = 0.2, 0.05
_REFUSED = "http://127.0.0.1:9/"
_RESIZES = {("PATCH", "/v1/pool"), ("PUT", "/v1/pools/{name}")}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _quick_args(task: object, args: object) -> None:
    """Cap a valid sleep, send an http job nowhere."""
    if not isinstance(args, dict):
        return
    seconds = args.get("seconds")
    if task == "sleep" and _number(seconds) and _SLEEP < seconds <= 3600:
        args["seconds"] = _SLEEP
    if task == "http" and isinstance(args.get("url"), str):
        args["url"] = _REFUSED


def _quick_job(job: dict) -> None:
    """Cap a job's args (or its items') and send it to an existing pool."""
    _quick_args(job.get("task"), job.get("args"))
    for item in job.get("items") if isinstance(job.get("items"), list) else []:
        _quick_args(job.get("task"), item)
    if isinstance(job.get("pool"), str) and _POOL.match(job["pool"]):
        job["pool"] = "default"
    for option, cap in (("delay", _SLEEP), ("retry_backoff", _SLEEP), ("retries", _RETRIES)):
        value = job.get(option)
        if _number(value) and cap < value <= _OPTION_MAX[option]:
            job[option] = cap
    if _number(job.get("retries")) and job["retries"] > 0 and job.get("retry_backoff") is None:
        job["retry_backoff"] = _SLEEP  # else the task's default backoff (1 s, doubling)


def _quick_body(body: object) -> None:
    """Every job of a submission, pile or map body."""
    if not isinstance(body, dict):
        return
    _quick_job(body)
    for job in body.get("jobs") if isinstance(body.get("jobs"), list) else []:
        if isinstance(job, dict):
            _quick_job(job)


@schemathesis.hook
def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    """Fresh idempotency keys, short waits and sleeps, no outbound calls."""
    headers = case.headers
    key = headers.get("Idempotency-Key") if isinstance(headers, MutableMapping) else None
    if isinstance(key, str) and _KEY.match(key):
        headers["Idempotency-Key"] = f"fuzz-{os.getpid()}-{next(_KEYS)}"
    query = case.query
    if isinstance(query, dict) and _number(query.get("wait")) and _WAIT < query["wait"] <= 60:
        query["wait"] = _WAIT
    _quick_body(case.body)
    if case.operation.path == "/v1/piles/{pile_id}/results" and isinstance(case.path_parameters, dict):
        pile = urllib.parse.quote(str(case.path_parameters.get("pile_id")), safe="")
        _admin("POST", f"{os.environ['FUZZ_BASE_URL']}/v1/piles/{pile}/close")


@schemathesis.hook
def after_call(context: Any, case: schemathesis.Case, response: Any) -> None:
    """Give a pool its size back after a resize (or after creating it)."""
    method = case.method.upper()
    if (method, case.operation.path) in _RESIZES:
        _admin(method, response.request.url, json={"size": int(os.environ["FUZZ_POOL_SIZE"])})


def _admin(method: str, url: str, **kwargs: Any) -> None:
    """One request with the admin token, outside the run's bookkeeping."""
    requests.request(method, url, timeout=5, headers={"Authorization": f"Bearer {os.environ['FUZZ_ADMIN_TOKEN']}"},
                     **kwargs)  # fmt: skip


@schemathesis.check
def fits_the_document(context: Any, response: Any, case: schemathesis.Case) -> None:
    """The answer is exactly as the document says (tests/contract's check), streams record by record."""
    answer = requests.Response()
    answer.status_code, answer._content, answer.encoding = response.status_code, response.content, "utf-8"
    answer.headers = CaseInsensitiveDict({name: ", ".join(values) for name, values in response.headers.items()})
    answer.request = requests.Request(case.method, response.request.url).prepare()
    answer.url = response.request.url
    method, path = case.method.upper(), case.operation.path
    if method == case.operation.method.upper():
        _CONTRACT.check(answer, method, path)
    elif response.status_code == 405:  # unsupported_method's probe: the framework's 405, documented once
        doc, pointer = _CONTRACT.resolve(_CONTRACT.spec["x-greenpool-common-responses"]["405"],
                                         "/x-greenpool-common-responses/405")  # fmt: skip
        _CONTRACT.check_documented(answer, doc, pointer, f"{method} {path} → 405")

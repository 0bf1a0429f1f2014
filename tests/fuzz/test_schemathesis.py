"""Schemathesis fuzzes a live server (gunicorn + GreenWorker, with bearer tokens) from openapi.yaml.

Every operation gets positive and negative cases from a derandomized Hypothesis run; each case is sent once
with the admin token, once in three with a submit token, once in three with no token (so 401s are
exercised), and its response must pass these checks: not a server error, a documented status code, a
documented content type, documented headers, and a body that fits the documented schema (NDJSON and SSE
streams are checked record by record by schemathesis; bodies in other media types — the YAML document,
the HTML page, the Prometheus text, static files — only have their status, type and headers checked:
schemathesis would parse the YAML document and hold the resulting object to its `type: string` schema).
Failures are collected (no shrinking: that would cost many more requests) and reported together; the test
fails on any. Bounded: ~1,300 requests, well
under three minutes on two cores.

Cases are kept quick without narrowing what is fuzzed: `wait` is capped at 0.2 s, a `sleep` job's seconds
at 0.05, an `http` job's URL points at a refused destination (no outbound traffic), and the pool is reset
to its size after a `PATCH /v1/pool` (a generated size 0 would stall the map streams that follow).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serverkit import REPO, Server, start_server

SPEC = REPO / "openapi.yaml"
ADMIN = "fuzz-admin-0123456789abcdef"
SUBMIT = "fuzz-submit-0123456789abcdef"
POOL_SIZE = 8
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 30}  # per operation
FROM_EXAMPLES = 5  # cases per documented example (valid tasks: these get 2xx answers)
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REQUEST_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an admin and a submit token, a small pool, and quick stream heartbeats."""
    env = {
        "GREENPOOL_POOL_SIZE": str(POOL_SIZE),
        "GREENPOOL_TOKENS": f"root:admin:{ADMIN},alice:submit:{SUBMIT}",
        "GREENPOOL_STREAM_HEARTBEAT": "0.5",
        "GREENPOOL_LOG_LEVEL": "warning",
    }
    srv = start_server(tmp_path_factory.mktemp("fuzz"), env=env, args=("--keep-alive", "30"))
    yield srv
    srv.stop()


def _quick(case: schemathesis.Case) -> None:
    """Keep a case fast: cap `wait`, `sleep` seconds, and send `http` jobs nowhere (see the module doc)."""
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("wait"), int | float) and query["wait"] > 0.2:
        query["wait"] = 0.2
    body = case.body
    if not isinstance(body, dict):
        return
    jobs = [body, *[j for j in body.get("jobs", []) if isinstance(j, dict)]] if isinstance(
        body.get("jobs", []), list) else [body]  # fmt: skip
    for job in jobs:
        task = job.get("task")
        args = [job.get("args")]
        if isinstance(body.get("items"), list) and job is body:
            args += body["items"]
        for arg in args:
            if not isinstance(arg, dict):
                continue
            if task == "sleep" and isinstance(arg.get("seconds"), int | float) and arg["seconds"] > 0.05:
                arg["seconds"] = 0.05
            if task == "http" and "url" in arg:
                arg["url"] = "http://127.0.0.1:9/"


class Fuzz:
    """Sends cases, runs the checks, and keeps score."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()
        self.sent = 0
        self.by_status: collections.Counter[tuple[str, int]] = collections.Counter()
        self.by_auth: collections.Counter[str] = collections.Counter()
        self.failures: dict[tuple[str, str], str] = {}

    def send(self, case: schemathesis.Case) -> None:
        """One request, its checks, and its bookkeeping."""
        _quick(case)
        who = ("admin", "submit", "none")[self.sent % 3]
        headers = {"Authorization": f"Bearer {ADMIN if who == 'admin' else SUBMIT}"} if who != "none" else {}
        self.sent += 1
        self.by_auth[who] += 1
        label = case.operation.label
        try:
            response = case.call(base_url=self.server.url, session=self.session, headers=headers,
                                 timeout=REQUEST_TIMEOUT)  # fmt: skip
        except requests.RequestException as exc:
            self.failures.setdefault((label, type(exc).__name__), f"{exc}\n{case.as_curl_command()}")
            return
        self.by_status[(label, response.status_code)] += 1
        media = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        checks = CHECKS if media.endswith(("json", "ndjson", "event-stream")) else CHECKS[:-1]
        try:
            case.validate_response(response, checks=checks)
        except BaseException as exc:  # a FailureGroup of failed checks: keep the first of each kind per operation
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            key = (label, f"{response.status_code} {type(exc).__name__}")
            self.failures.setdefault(key, f"{str(exc)[:1500]}\n{case.as_curl_command(headers=headers)}")
        if case.operation.method.upper() == "PATCH" and case.operation.path == "/v1/pool":
            self.session.patch(self.server.url + "/v1/pool", json={"size": POOL_SIZE},
                               headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)  # fmt: skip


def _run_operation(fuzz: Fuzz, operation: Any, mode: GenerationMode | None, examples: int) -> None:
    """Send up to `examples` generated cases of one operation in one generation mode (None: built from
    the document's examples)."""
    try:
        if mode is None:
            strategies = operation.schema.get_strategies_from_examples(operation)
            if not strategies:
                return
            strategy = strategies[0] if len(strategies) == 1 else st.one_of(*strategies)
        else:
            strategy = operation.as_strategy(generation_mode=mode)
    except Exception:  # e.g. nothing negative to generate for an operation without inputs
        return

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def run(case: schemathesis.Case) -> None:
        fuzz.send(case)

    with contextlib.suppress(Unsatisfiable):
        run()


@pytest.mark.timeout(300)
def test_fuzzed_requests_get_documented_answers(server: Server, tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_path(str(SPEC))
    fuzz = Fuzz(server)
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        _run_operation(fuzz, operation, None, FROM_EXAMPLES)
        for mode, examples in EXAMPLES.items():
            _run_operation(fuzz, operation, mode, examples)
    seconds = time.monotonic() - started
    per_op = collections.Counter(label for label, _ in fuzz.by_status.elements())
    statuses = collections.Counter(status for _, status in fuzz.by_status.elements())
    print(f"\n[fuzz] {fuzz.sent} requests over {len(operations)} operations in {seconds:.1f}s; "
          f"auth {dict(fuzz.by_auth)}; statuses {dict(sorted(statuses.items()))}")  # fmt: skip
    for label, count in sorted(per_op.items()):
        print(f"  {count:4d}  {label}")
    report = "\n\n".join(f"{label}: {kind}\n{detail}" for (label, kind), detail in sorted(fuzz.failures.items()))
    assert not fuzz.failures, f"{len(fuzz.failures)} kinds of failure:\n\n{report}"
    assert statuses.get(500, 0) == 0
    assert fuzz.sent >= MIN_REQUESTS, fuzz.sent
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200

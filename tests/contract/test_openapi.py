"""The OpenAPI document (service/openapi.yaml) is valid, matches the routes the app serves, and real
responses from a real server (gunicorn + GreenWorker) fit it: status codes, media types, headers, bodies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon
import jsonschema
import pytest
import requests
import yaml
from openapi_contract import NDJSON, REPO, SPEC_PATH, SSE, Contract, Server, ndjson_items, sse_events, start_server
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families
from requests.structures import CaseInsensitiveDict

# Documented answers provoked by test_draining_server_answers_fit_the_document rather than by a Case.
COVERED_BY_DRAIN_TEST = {
    ("submitJob", 503),
    ("getReady", 503),
    ("createPile", 503),
    ("addPileJobs", 503),
    ("mapItems", 503),
}

JSON = {"Content-Type": "application/json"}


# -- the document itself -----------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate_openapi(spec)  # raises OpenAPIValidationError with the path of the first problem


@pytest.mark.timeout(5)
def test_root_openapi_yaml_is_a_symlink_to_the_package_copy() -> None:
    root = REPO / "openapi.yaml"
    assert root.is_symlink(), "openapi.yaml at the repository root must be a symlink (one source of truth)"
    assert os.readlink(root) == "service/openapi.yaml"
    assert root.resolve() == SPEC_PATH.resolve()


@pytest.mark.timeout(5)
def test_every_operation_is_described(contract: Contract) -> None:
    ids = []
    for method, path, op in contract.operations():
        for key in ("operationId", "summary", "description"):
            assert op.get(key), f"{method} {path} has no {key}"
        ids.append(op["operationId"])
        for code, response in op["responses"].items():
            response, _ = contract.resolve(response, "")
            if code.startswith(("4", "5")):
                assert list(response.get("content", {})) == ["application/problem+json"], (
                    f"{method} {path} {code}: errors are application/problem+json only"
                )
    assert len(ids) == len(set(ids)), "operationIds must be unique"


@pytest.mark.timeout(5)
def test_common_responses_are_documented(contract: Contract) -> None:
    common = contract.spec["x-greenpool-common-responses"]
    assert set(common) == {"400", "404", "405"}
    allow = contract.resolve(common["405"], "")[0]["headers"]["Allow"]
    assert contract.resolve(allow, "")[0]["required"] is True


@pytest.mark.timeout(10)
def test_schema_examples_fit_their_schemas(contract: Contract) -> None:
    for name, schema in contract.spec["components"]["schemas"].items():
        for index, example in enumerate(schema.get("examples", [])):
            errors = contract.schema_errors(f"/components/schemas/{name}", example)
            assert not errors, f"components.schemas.{name}.examples[{index}]: {errors}"


# -- the document against the app's routes ----------------------------------------------------------------
_LIST_ROUTES = """
import json, falcon.inspect
from service.app import create_app
from service.config import Config
app = create_app(Config(pool_size=1, log_level="warning", store="memory"))
routes = falcon.inspect.inspect_app(app).routes
print(json.dumps({r.path: [m.method for m in r.methods if not m.internal] for r in routes}))
"""


def _served_routes() -> dict[str, set[str]]:
    """{path template: methods} of `create_app(Config(...))` (falcon's implicit OPTIONS and 405s left out,
    and HEAD, which every GET route answers: the document says so once, in `info.description`).

    Built in a subprocess: the app's engine spawns green threads on the hub of the thread that builds it
    and registers a drain hook, neither of which should outlive this test in the pytest process.
    """
    out = subprocess.run(
        [sys.executable, "-c", _LIST_ROUTES], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    routes = json.loads(out.stdout.strip().splitlines()[-1])
    for path, methods in routes.items():
        assert ("HEAD" in methods) == ("GET" in methods), f"{path}: HEAD must be answered exactly where GET is"
    return {path: set(methods) - {"OPTIONS", "HEAD"} for path, methods in routes.items()}


@pytest.mark.timeout(20)
def test_document_lists_exactly_the_served_routes(contract: Contract) -> None:
    served = _served_routes()
    documented: dict[str, set[str]] = {}
    for method, path, _ in contract.operations():
        documented.setdefault(path, set()).add(method)

    assert sorted(set(served) - set(documented)) == [], "routes served but not in openapi.yaml"
    assert sorted(set(documented) - set(served)) == [], "paths in openapi.yaml the app does not serve"
    for path in served:
        assert documented[path] == served[path], f"{path}: documented {documented[path]}, served {served[path]}"


# -- real responses against the document -------------------------------------------------------------------
@dataclass
class Case:
    """One request that should get `status` from operation `op_id`."""

    op_id: str
    status: int
    label: str
    method: str
    path: str  # the template, as in the document
    run: Callable[[Server, Contract], requests.Response]
    server: str = "server"  # or "full_server"
    bug: str = ""  # a known server bug: the case is expected to fail (strict xfail) until it is fixed


CASES: list[Case] = []


def case(
    op_id: str, status: int, method: str, path: str, label: str = "", server: str = "server", bug: str = ""
) -> Callable:
    """Register a request recipe `run(server, contract) -> response` for (operation, status)."""

    def register(run: Callable[[Server, Contract], requests.Response]) -> Callable:
        CASES.append(Case(op_id, status, label or run.__name__, method, path, run, server, bug))
        return run

    return register


def submit(srv: Server, body: Any, params: dict[str, Any] | None = None) -> requests.Response:
    return srv.request("POST", "/v1/jobs", params=params, data=json.dumps(body), headers=JSON)


def submitted(srv: Server, body: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    response = submit(srv, body, params)
    assert response.status_code in (200, 202), response.text
    return response.json()


# GET /v1/tasks
@case("listTasks", 200, "GET", "/v1/tasks")
def tasks_ok(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/tasks")
    names = [t["name"] for t in response.json()["tasks"]]
    assert {"sleep", "echo", "http"} <= set(names), names
    for task in response.json()["tasks"]:
        jsonschema.Draft202012Validator.check_schema(task["args_schema"])
    return response


# POST /v1/jobs
@case("submitJob", 202, "POST", "/v1/jobs", "accepted")
def submit_accepted(srv: Server, c: Contract) -> requests.Response:
    body = {"task": "sleep", "args": {"seconds": 0.05}, "timeout": 10}
    assert c.request_body_valid("POST", "/v1/jobs", body)
    response = submit(srv, body)
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    return response


@case("submitJob", 202, "POST", "/v1/jobs", "wait-passed")
def submit_wait_passed(srv: Server, c: Contract) -> requests.Response:
    response = submit(srv, {"task": "sleep", "args": {"seconds": 0.5}}, {"wait": "0.05"})
    assert response.json()["status"] in ("queued", "running")
    return response


@case("submitJob", 200, "POST", "/v1/jobs", "ended-within-wait")
def submit_ended(srv: Server, c: Contract) -> requests.Response:
    body = {"task": "echo", "args": {"greeting": "hi", "n": [1, 2]}}
    assert c.request_body_valid("POST", "/v1/jobs", body)
    response = submit(srv, body, {"wait": "5"})
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"] == {"greeting": "hi", "n": [1, 2]}
    return response


@case("submitJob", 200, "POST", "/v1/jobs", "failed-job")
def submit_failed(srv: Server, c: Contract) -> requests.Response:
    response = submit(srv, {"task": "sleep", "args": {"seconds": 5}, "timeout": 0.05}, {"wait": "5"})
    assert response.json()["status"] == "timed_out"
    assert response.json()["error"]["type"]
    return response


@case("submitJob", 400, "POST", "/v1/jobs", "wait-not-a-number")
def submit_bad_wait(srv: Server, c: Contract) -> requests.Response:
    return submit(srv, {"task": "echo"}, {"wait": "soon"})


@case("submitJob", 400, "POST", "/v1/jobs", "wait-over-60")
def submit_wait_too_long(srv: Server, c: Contract) -> requests.Response:
    return submit(srv, {"task": "echo"}, {"wait": "60.5"})


@case("submitJob", 400, "POST", "/v1/jobs", "malformed-json")
def submit_malformed(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/jobs", data='{"task": ', headers=JSON)


@case("submitJob", 413, "POST", "/v1/jobs")
def submit_too_large(srv: Server, c: Contract) -> requests.Response:
    return submit(srv, {"task": "echo", "args": {"pad": "x" * 8192}})


@case("submitJob", 415, "POST", "/v1/jobs")
def submit_not_json(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/jobs", data="task=echo", headers={"Content-Type": "text/plain"})


@case("submitJob", 422, "POST", "/v1/jobs", "not-an-object")
def submit_array(srv: Server, c: Contract) -> requests.Response:
    assert not c.request_body_valid("POST", "/v1/jobs", [])
    return submit(srv, [])


@case("submitJob", 422, "POST", "/v1/jobs", "bad-shape")
def submit_bad_shape(srv: Server, c: Contract) -> requests.Response:
    body = {"args": [], "timeout": 0, "extra": 1}
    assert not c.request_body_valid("POST", "/v1/jobs", body)
    response = submit(srv, body)
    assert {e["field"] for e in response.json()["errors"]} == {"task", "args", "timeout", "extra"}
    return response


@case("submitJob", 422, "POST", "/v1/jobs", "unknown-task")
def submit_unknown_task(srv: Server, c: Contract) -> requests.Response:
    return submit(srv, {"task": "no-such-task", "args": {}})


@case("submitJob", 422, "POST", "/v1/jobs", "bad-args")
def submit_bad_args(srv: Server, c: Contract) -> requests.Response:
    response = submit(srv, {"task": "sleep", "args": {"seconds": "one"}})
    assert response.json()["errors"][0]["field"] == "args.seconds"
    return response


@case("submitJob", 429, "POST", "/v1/jobs", server="full_server")
def submit_queue_full(srv: Server, c: Contract) -> requests.Response:
    for _ in range(3):  # max_queued is 2 and nothing runs
        response = submit(srv, {"task": "echo", "args": {}})
        if response.status_code == 429:
            assert response.json()["retry_after"] == int(response.headers["Retry-After"])
            return response
        assert response.status_code == 202, response.text
    raise AssertionError("the queue never filled")


# GET /v1/jobs
@case("listJobs", 200, "GET", "/v1/jobs", "paged")
def list_paged(srv: Server, c: Contract) -> requests.Response:
    for _ in range(2):
        submitted(srv, {"task": "echo", "args": {}}, {"wait": "5"})
    first = srv.request("GET", "/v1/jobs", params={"status": "succeeded", "limit": "1"})
    c.check(first, "GET", "/v1/jobs")
    cursor = first.json()["next_cursor"]
    assert cursor is not None and len(first.json()["jobs"]) == 1
    response = srv.request("GET", "/v1/jobs", params={"status": "succeeded", "limit": "1", "cursor": cursor})
    assert response.json()["jobs"][0]["id"] != first.json()["jobs"][0]["id"]
    return response


@case("listJobs", 200, "GET", "/v1/jobs", "all")
def list_all(srv: Server, c: Contract) -> requests.Response:
    submitted(srv, {"task": "sleep", "args": {"seconds": 0.01}})
    return srv.request("GET", "/v1/jobs", params={"limit": "1000"})


@case("listJobs", 400, "GET", "/v1/jobs", "bad-status")
def list_bad_status(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"status": "done"})


@case("listJobs", 400, "GET", "/v1/jobs", "limit-0")
def list_bad_limit(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"limit": "0"})


@case("listJobs", 400, "GET", "/v1/jobs", "limit-1001")
def list_limit_too_big(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"limit": "1001"})


@case("listJobs", 400, "GET", "/v1/jobs", "bad-cursor")
def list_bad_cursor(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"cursor": "abc"})


@case("listJobs", 400, "GET", "/v1/jobs", "limit-superscript-digit")
def list_limit_superscript(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"limit": "\u00b2"})


@case("listJobs", 400, "GET", "/v1/jobs", "limit-double-minus")
def list_limit_double_minus(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"limit": "--5"})


@case("listJobs", 400, "GET", "/v1/jobs", "cursor-superscript-digit")
def list_cursor_superscript(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs", params={"cursor": "\u00b2"})


# GET /v1/jobs/{job_id}
@case("getJob", 200, "GET", "/v1/jobs/{job_id}", "read")
def get_job(srv: Server, c: Contract) -> requests.Response:
    job = submitted(srv, {"task": "echo", "args": {"x": 1}}, {"wait": "5"})
    return srv.request("GET", f"/v1/jobs/{job['id']}")


@case("getJob", 200, "GET", "/v1/jobs/{job_id}", "long-poll")
def get_job_wait(srv: Server, c: Contract) -> requests.Response:
    job = submitted(srv, {"task": "sleep", "args": {"seconds": 0.2}})
    response = srv.request("GET", f"/v1/jobs/{job['id']}", params={"wait": "5"})
    assert response.json()["status"] == "succeeded"
    return response


@case("getJob", 200, "GET", "/v1/jobs/{job_id}", "running")
def get_job_running(srv: Server, c: Contract) -> requests.Response:
    job = submitted(srv, {"task": "sleep", "args": {"seconds": 0.5}})
    time.sleep(0.05)
    response = srv.request("GET", f"/v1/jobs/{job['id']}", params={"wait": "0"})
    assert response.json()["status"] in ("queued", "running")
    return response


@case("getJob", 400, "GET", "/v1/jobs/{job_id}")
def get_job_bad_wait(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs/whatever", params={"wait": "-1"})


@case("getJob", 404, "GET", "/v1/jobs/{job_id}")
def get_job_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/jobs/0123456789abcdef0123456789abcdef")


# DELETE /v1/jobs/{job_id}
@case("cancelJob", 200, "DELETE", "/v1/jobs/{job_id}")
def cancel_running(srv: Server, c: Contract) -> requests.Response:
    job = submitted(srv, {"task": "sleep", "args": {"seconds": 30}})
    response = srv.request("DELETE", f"/v1/jobs/{job['id']}")
    assert response.json()["status"] == "cancelled"
    return response


@case("cancelJob", 404, "DELETE", "/v1/jobs/{job_id}")
def cancel_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("DELETE", "/v1/jobs/nope")


@case("cancelJob", 409, "DELETE", "/v1/jobs/{job_id}")
def cancel_ended(srv: Server, c: Contract) -> requests.Response:
    job = submitted(srv, {"task": "echo", "args": {}}, {"wait": "5"})
    return srv.request("DELETE", f"/v1/jobs/{job['id']}")


# /v1/pool
@case("getPool", 200, "GET", "/v1/pool")
def pool_read(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/pool")


@case("getPoolHistory", 200, "GET", "/v1/pool/history")
def pool_history(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/pool/history")
    body = response.json()
    assert body["interval_s"] == 1 and all(s["t"] <= body["now"] for s in body["samples"])
    return response


@case("resizePool", 200, "PATCH", "/v1/pool")
def pool_resize(srv: Server, c: Contract) -> requests.Response:
    assert c.request_body_valid("PATCH", "/v1/pool", {"size": 4})
    response = srv.request("PATCH", "/v1/pool", data=json.dumps({"size": 4}), headers=JSON)
    assert response.json()["size"] == 4
    return response


@case("resizePool", 400, "PATCH", "/v1/pool")
def pool_malformed(srv: Server, c: Contract) -> requests.Response:
    return srv.request("PATCH", "/v1/pool", data="{size: 4}", headers=JSON)


@case("resizePool", 413, "PATCH", "/v1/pool")
def pool_too_large(srv: Server, c: Contract) -> requests.Response:
    return srv.request("PATCH", "/v1/pool", data=json.dumps({"size": 4, "pad": " " * 8192}), headers=JSON)


@case("resizePool", 415, "PATCH", "/v1/pool")
def pool_not_json(srv: Server, c: Contract) -> requests.Response:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return srv.request("PATCH", "/v1/pool", data="size=4", headers=form)


@case("resizePool", 422, "PATCH", "/v1/pool", "negative")
def pool_negative(srv: Server, c: Contract) -> requests.Response:
    assert not c.request_body_valid("PATCH", "/v1/pool", {"size": -1})
    return srv.request("PATCH", "/v1/pool", data=json.dumps({"size": -1}), headers=JSON)


@case("resizePool", 422, "PATCH", "/v1/pool", "string-and-extra")
def pool_string(srv: Server, c: Contract) -> requests.Response:
    body = {"size": "4", "grow": True}
    assert not c.request_body_valid("PATCH", "/v1/pool", body)
    response = srv.request("PATCH", "/v1/pool", data=json.dumps(body), headers=JSON)
    assert {e["field"] for e in response.json()["errors"]} == {"size", "grow"}
    return response


# /v1/pools (each case its own pool: cases share one server)
def put_pool(srv: Server, name: str, body: Any, **headers: str) -> requests.Response:
    return srv.request("PUT", f"/v1/pools/{name}", data=json.dumps(body), headers={**JSON, **headers})


@case("listPools", 200, "GET", "/v1/pools")
def pools_list(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/pools")
    assert response.json()["pools"][0]["name"] == "default"
    return response


@case("getNamedPool", 200, "GET", "/v1/pools/{name}")
def named_pool_read(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/pools/default")


@case("getNamedPoolHistory", 200, "GET", "/v1/pools/{name}/history")
def named_pool_history(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/pools/default/history")
    assert response.json()["interval_s"] == 1
    return response


@case("getNamedPoolHistory", 404, "GET", "/v1/pools/{name}/history")
def named_pool_history_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/pools/nope/history")


@case("getNamedPool", 404, "GET", "/v1/pools/{name}")
def named_pool_missing(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/pools/no-such-pool")


@case("putNamedPool", 201, "PUT", "/v1/pools/{name}")
def named_pool_created(srv: Server, c: Contract) -> requests.Response:
    assert c.request_body_valid("PUT", "/v1/pools/{name}", {"size": 3})
    response = put_pool(srv, "contract-created", {"size": 3})
    assert response.headers["Location"] == "/v1/pools/contract-created" and response.json()["size"] == 3
    return response


@case("putNamedPool", 200, "PUT", "/v1/pools/{name}")
def named_pool_resized(srv: Server, c: Contract) -> requests.Response:
    assert put_pool(srv, "contract-resized", {"size": 1}).status_code == 201
    response = put_pool(srv, "contract-resized", {"size": 2})
    assert response.json()["size"] == 2
    return response


@case("putNamedPool", 400, "PUT", "/v1/pools/{name}")
def named_pool_malformed(srv: Server, c: Contract) -> requests.Response:
    return srv.request("PUT", "/v1/pools/contract-bad", data="{size: 4}", headers=JSON)


@case("putNamedPool", 413, "PUT", "/v1/pools/{name}")
def named_pool_too_large(srv: Server, c: Contract) -> requests.Response:
    return put_pool(srv, "contract-bad", {"size": 4, "pad": " " * 8192})


@case("putNamedPool", 415, "PUT", "/v1/pools/{name}")
def named_pool_not_json(srv: Server, c: Contract) -> requests.Response:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return srv.request("PUT", "/v1/pools/contract-bad", data="size=4", headers=form)


@case("putNamedPool", 422, "PUT", "/v1/pools/{name}", "bad-name")
def named_pool_bad_name(srv: Server, c: Contract) -> requests.Response:
    response = put_pool(srv, "Not.A.Name", {"size": 1})
    assert [e["field"] for e in response.json()["errors"]] == ["name"]
    return response


@case("putNamedPool", 422, "PUT", "/v1/pools/{name}", "bad-size")
def named_pool_bad_size(srv: Server, c: Contract) -> requests.Response:
    assert not c.request_body_valid("PUT", "/v1/pools/{name}", {"size": 100_001})
    response = put_pool(srv, "contract-bad", {"size": 100_001})
    assert [e["field"] for e in response.json()["errors"]] == ["size"]
    return response


@case("deleteNamedPool", 204, "DELETE", "/v1/pools/{name}")
def named_pool_deleted(srv: Server, c: Contract) -> requests.Response:
    assert put_pool(srv, "contract-deleted", {"size": 1}).status_code == 201
    return srv.request("DELETE", "/v1/pools/contract-deleted")


@case("deleteNamedPool", 404, "DELETE", "/v1/pools/{name}")
def named_pool_delete_missing(srv: Server, c: Contract) -> requests.Response:
    return srv.request("DELETE", "/v1/pools/no-such-pool")


@case("deleteNamedPool", 409, "DELETE", "/v1/pools/{name}")
def named_pool_delete_default(srv: Server, c: Contract) -> requests.Response:
    return srv.request("DELETE", "/v1/pools/default")


# health and the document
@case("getHealth", 200, "GET", "/healthz")
def health(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/healthz")


@case("getReady", 200, "GET", "/readyz")
def ready(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/readyz")


@case("getOpenAPI", 200, "GET", "/openapi.yaml")
def openapi_document(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/openapi.yaml")
    assert response.content == SPEC_PATH.read_bytes()
    assert yaml.safe_load(response.content) == c.spec
    return response


# -- piles and map -------------------------------------------------------------------------------------------
EVENT_STREAM = {"Accept": "text/event-stream"}
PILE_ID = "0123456789abcdef0123456789abcdef"  # an id no pile has


def create_pile(srv: Server, body: Any) -> requests.Response:
    return srv.request("POST", "/v1/piles", data=json.dumps(body), headers=JSON)


def created_pile(srv: Server, body: Any) -> dict[str, Any]:
    response = create_pile(srv, body)
    assert response.status_code == 201, response.text
    return response.json()


def add_jobs(srv: Server, pile_id: str, body: Any) -> requests.Response:
    return srv.request("POST", f"/v1/piles/{pile_id}/jobs", data=json.dumps(body), headers=JSON)


def close_pile(srv: Server, pile_id: str) -> None:
    assert srv.request("POST", f"/v1/piles/{pile_id}/close").status_code == 200


def results(srv: Server, pile_id: str, params: Any = None, headers: Any = None) -> requests.Response:
    """The whole result stream of a pile that is (or will soon be) complete."""
    return srv.request("GET", f"/v1/piles/{pile_id}/results", params=params, headers=headers)


def map_items(srv: Server, body: Any, headers: Any = None) -> requests.Response:
    return srv.request("POST", "/v1/map", data=json.dumps(body), headers={**JSON, **(headers or {})})


def streamed(response: requests.Response) -> requests.Response:
    """Assert the answer is a chunked stream (checked further by the document's item schemas)."""
    assert response.headers.get("Transfer-Encoding") == "chunked", response.headers
    assert "Content-Length" not in response.headers, response.headers
    return response


def records(response: requests.Response) -> list[dict[str, Any]]:
    """The ResultRecords of an NDJSON stream (heartbeats skipped)."""
    assert response.headers["Content-Type"] == NDJSON
    return ndjson_items(response.text)


def events(response: requests.Response) -> list[dict[str, Any]]:
    """The events of an SSE stream; the last one must be `end`, the others `result`."""
    assert response.headers["Content-Type"] == SSE
    found = sse_events(response.text)
    assert found and found[-1]["event"] == "end", found[-3:]
    assert all(e["event"] == "result" for e in found[:-1]), found
    return found[:-1]


def fill_queue(srv: Server) -> None:
    """Submit jobs until the (never running) queue of the full server is full."""
    for _ in range(10):
        if submit(srv, {"task": "echo", "args": {}}).status_code == 429:
            return
    raise AssertionError("the queue never filled")


def read_past_heartbeat(
    srv: Server, response: requests.Response, pile_id: str, heartbeat: bytes, then: Callable[[], None]
) -> None:
    """Read a live stream until it has sent a heartbeat, call `then()`, read it to its end; keep the body."""
    body, called = b"", False
    for chunk in response.iter_content(chunk_size=None):
        body += chunk
        if not called and heartbeat in body:
            assert srv.request("GET", f"/v1/piles/{pile_id}").json()["readers"] == 1  # this stream
            then()
            called = True
    assert called, f"no heartbeat in {body[:500]!r}"
    response._content = body


# POST /v1/piles
@case("createPile", 201, "POST", "/v1/piles", "task-and-items")
def pile_items(srv: Server, c: Contract) -> requests.Response:
    body = {"task": "echo", "items": [{"i": 0}, {"i": 1}], "timeout": 10}
    assert c.request_body_valid("POST", "/v1/piles", body)
    response = create_pile(srv, body)
    summary = response.json()
    assert response.headers["Location"] == f"/v1/piles/{summary['id']}"
    assert (summary["size"], summary["closed"], summary["readers"]) == (2, True, 0)
    return response


@case("createPile", 201, "POST", "/v1/piles", "jobs-open")
def pile_jobs_open(srv: Server, c: Contract) -> requests.Response:
    body = {"jobs": [{"task": "echo", "args": {"a": 1}}, {"task": "sleep", "args": {"seconds": 0.01}}], "open": True}
    assert c.request_body_valid("POST", "/v1/piles", body)
    response = create_pile(srv, body)
    assert (response.json()["size"], response.json()["closed"]) == (2, False)
    close_pile(srv, response.json()["id"])
    return response


@case("createPile", 201, "POST", "/v1/piles", "empty")
def pile_empty(srv: Server, c: Contract) -> requests.Response:
    assert c.request_body_valid("POST", "/v1/piles", {"jobs": []})
    response = create_pile(srv, {"jobs": []})
    assert (response.json()["size"], response.json()["closed"]) == (0, True)
    return response


@case("createPile", 400, "POST", "/v1/piles")
def pile_malformed(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/piles", data='{"jobs": [', headers=JSON)


@case("createPile", 413, "POST", "/v1/piles")
def pile_too_large(srv: Server, c: Contract) -> requests.Response:
    return create_pile(srv, {"task": "echo", "items": [{"pad": "x" * 100}] * 50})


@case("createPile", 415, "POST", "/v1/piles")
def pile_not_json(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/piles", data="task=echo", headers={"Content-Type": "text/plain"})


def _invalid_pile(body: Any, field: str) -> Callable[[Server, Contract], requests.Response]:
    def run(srv: Server, c: Contract) -> requests.Response:
        assert not c.request_body_valid("POST", "/v1/piles", body)
        before = srv.request("GET", "/v1/pool").json()["submitted"]
        response = create_pile(srv, body)
        assert field in [e["field"] for e in response.json()["errors"]], response.text
        assert srv.request("GET", "/v1/pool").json()["submitted"] == before  # all or none
        return response

    return run


for _label, _body, _field in [
    ("not-an-object", [{"task": "echo"}], ""),
    ("neither-form", {"task": "echo"}, "jobs"),
    ("both-forms", {"jobs": [], "items": [], "task": "echo"}, "jobs"),
    ("jobs-with-a-timeout", {"jobs": [{"task": "echo"}], "timeout": 5}, "task"),
    ("items-not-an-array", {"task": "echo", "items": {}}, "items"),
    ("item-not-an-object", {"task": "echo", "items": [1]}, "items[0].args"),
    ("open-not-a-boolean", {"task": "echo", "items": [], "open": "yes"}, "open"),
    ("unknown-task", {"jobs": [{"task": "echo"}, {"task": "no-such-task", "args": {}}]}, "jobs[1].task"),
    ("bad-item-args", {"task": "sleep", "items": [{"seconds": 1}, {"seconds": "x"}]}, "items[1].args.seconds"),
    ("no-items-unknown-task", {"task": "no-such-task", "items": []}, "task"),
]:
    case("createPile", 422, "POST", "/v1/piles", _label)(_invalid_pile(_body, _field))


@case("createPile", 429, "POST", "/v1/piles", "queue-full", server="full_server")
def pile_queue_full(srv: Server, c: Contract) -> requests.Response:
    fill_queue(srv)
    response = create_pile(srv, {"task": "echo", "items": [{}]})
    assert response.json()["retry_after"] == int(response.headers["Retry-After"])
    return response


@case("createPile", 413, "POST", "/v1/piles", "larger-than-the-queue", server="full_server")
def pile_larger_than_queue(srv: Server, c: Contract) -> requests.Response:
    return create_pile(srv, {"task": "echo", "items": [{}] * 3})  # max_queued is 2: it can never fit


# GET /v1/piles/{pile_id}
@case("getPile", 200, "GET", "/v1/piles/{pile_id}", "complete")
def pile_read(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [{"task": "echo"}, {"task": "sleep", "args": {"seconds": 5}, "timeout": 0.05}]})
    results(srv, pile["id"])  # ends once both jobs have ended
    response = srv.request("GET", f"/v1/piles/{pile['id']}")
    summary = response.json()
    assert (summary["size"], summary["done"], summary["pending"]) == (2, 2, 0)
    assert (summary["succeeded"], summary["timed_out"], summary["closed"]) == (1, 1, True)
    return response


@case("getPile", 200, "GET", "/v1/piles/{pile_id}", "pending")
def pile_pending(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.3}], "open": True})
    response = srv.request("GET", f"/v1/piles/{pile['id']}")
    assert (response.json()["pending"], response.json()["closed"]) == (1, False)
    close_pile(srv, pile["id"])
    return response


@case("getPile", 404, "GET", "/v1/piles/{pile_id}")
def pile_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", f"/v1/piles/{PILE_ID}")


# POST /v1/piles/{pile_id}/jobs
@case("addPileJobs", 202, "POST", "/v1/piles/{pile_id}/jobs", "task-and-items")
def add_items(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{}], "open": True})
    body = {"task": "echo", "items": [{"n": 1}, {"n": 2}]}
    assert c.request_body_valid("POST", "/v1/piles/{pile_id}/jobs", body)
    response = add_jobs(srv, pile["id"], body)
    assert response.json()["size"] == 3
    assert [a["index"] for a in response.json()["added"]] == [1, 2]
    for added, n in zip(response.json()["added"], (1, 2), strict=True):
        job = srv.request("GET", f"/v1/jobs/{added['job_id']}", params={"wait": "5"}).json()
        assert (job["pile"], job["result"]) == (pile["id"], {"n": n})
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 202, "POST", "/v1/piles/{pile_id}/jobs", "jobs")
def add_jobs_form(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    body = {"jobs": [{"task": "echo", "args": {"x": 1}, "timeout": 5}]}
    assert c.request_body_valid("POST", "/v1/piles/{pile_id}/jobs", body)
    response = add_jobs(srv, pile["id"], body)
    assert [a["index"] for a in response.json()["added"]] == [0]
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 400, "POST", "/v1/piles/{pile_id}/jobs")
def add_malformed(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    response = srv.request("POST", f"/v1/piles/{pile['id']}/jobs", data="{jobs: []}", headers=JSON)
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 404, "POST", "/v1/piles/{pile_id}/jobs")
def add_unknown(srv: Server, c: Contract) -> requests.Response:
    return add_jobs(srv, PILE_ID, {"task": "echo", "items": [{}]})


@case("addPileJobs", 409, "POST", "/v1/piles/{pile_id}/jobs")
def add_closed(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{}]})  # closed: created without "open"
    response = add_jobs(srv, pile["id"], {"task": "echo", "items": [{}]})
    assert srv.request("GET", f"/v1/piles/{pile['id']}").json()["size"] == 1
    return response


@case("addPileJobs", 413, "POST", "/v1/piles/{pile_id}/jobs")
def add_too_large(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    response = add_jobs(srv, pile["id"], {"task": "echo", "items": [{"pad": "x" * 8192}]})
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 415, "POST", "/v1/piles/{pile_id}/jobs")
def add_not_json(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = srv.request("POST", f"/v1/piles/{pile['id']}/jobs", data="task=echo", headers=form)
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 422, "POST", "/v1/piles/{pile_id}/jobs", "open-is-not-a-field")
def add_with_open(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    body = {"task": "echo", "items": [{}], "open": True}
    assert not c.request_body_valid("POST", "/v1/piles/{pile_id}/jobs", body)
    response = add_jobs(srv, pile["id"], body)
    assert [e["field"] for e in response.json()["errors"]] == ["open"]
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 422, "POST", "/v1/piles/{pile_id}/jobs", "bad-job-args")
def add_bad_args(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    response = add_jobs(srv, pile["id"], {"jobs": [{"task": "echo"}, {"task": "sleep", "args": {"seconds": -1}}]})
    assert "jobs[1].args.seconds" in [e["field"] for e in response.json()["errors"]], response.text
    assert srv.request("GET", f"/v1/piles/{pile['id']}").json()["size"] == 0  # all or none
    close_pile(srv, pile["id"])
    return response


@case("addPileJobs", 429, "POST", "/v1/piles/{pile_id}/jobs", server="full_server")
def add_queue_full(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    fill_queue(srv)
    response = add_jobs(srv, pile["id"], {"task": "echo", "items": [{}]})
    assert response.json()["retry_after"] == int(response.headers["Retry-After"])
    return response


# POST /v1/piles/{pile_id}/close
@case("closePile", 200, "POST", "/v1/piles/{pile_id}/close", "open-pile")
def close_open(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    response = srv.request("POST", f"/v1/piles/{pile['id']}/close")
    assert response.json()["closed"] is True
    return response


@case("closePile", 200, "POST", "/v1/piles/{pile_id}/close", "already-closed")
def close_closed(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{}]})
    return srv.request("POST", f"/v1/piles/{pile['id']}/close", data="ignored", headers={"Content-Type": "text/plain"})


@case("closePile", 404, "POST", "/v1/piles/{pile_id}/close")
def close_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", f"/v1/piles/{PILE_ID}/close")


# GET /v1/piles/{pile_id}/results
RESULTS = "/v1/piles/{pile_id}/results"


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-completion-order")
def results_completion(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.3}, {"seconds": 0.0}, {"seconds": 0.15}]})
    response = streamed(results(srv, pile["id"]))
    assert [r["index"] for r in records(response)] == [1, 2, 0]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-submitted-order")
def results_submitted(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.2}, {"seconds": 0.0}, {"seconds": 0.1}]})
    response = streamed(results(srv, pile["id"], {"order": "submitted"}))
    assert [r["index"] for r in records(response)] == [0, 1, 2]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-failed-jobs")
def results_failed(srv: Server, c: Contract) -> requests.Response:
    jobs = [{"task": "sleep", "args": {"seconds": 5}, "timeout": 0.05}, {"task": "echo", "args": {"v": None}}]
    pile = created_pile(srv, {"jobs": jobs})
    response = results(srv, pile["id"], {"order": "submitted"})
    timed_out, echoed = records(response)
    assert (timed_out["status"], timed_out["error"]["type"], timed_out["result"]) == ("timed_out", "Timeout", None)
    assert (echoed["status"], echoed["result"], echoed["error"]) == ("succeeded", {"v": None}, None)
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-after")
def results_after(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{"i": i} for i in range(6)]})
    everything = records(results(srv, pile["id"]))
    response = results(srv, pile["id"], {"after": "3"})
    assert records(response) == everything[4:]  # positions 4 and 5: no gap, no duplicate
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-any-other-accept")
def results_other_accept(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{}]})
    response = results(srv, pile["id"], headers={"Accept": "application/json"})
    assert len(records(response)) == 1
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-empty-pile")
def results_empty(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    response = streamed(results(srv, pile["id"]))
    assert response.content == b""
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse")
def results_sse(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.1}, {"seconds": 0.0}, {"seconds": 0.05}]})
    response = streamed(results(srv, pile["id"], headers=EVENT_STREAM))
    found = events(response)
    assert [e["id"] for e in found] == ["0", "1", "2"]
    assert [e["data"]["index"] for e in found] == [1, 2, 0]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse-submitted-ids-are-indexes")
def results_sse_submitted(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.1}, {"seconds": 0.0}]})
    response = results(srv, pile["id"], {"order": "submitted"}, EVENT_STREAM)
    assert [(e["id"], e["data"]["index"]) for e in events(response)] == [("0", 0), ("1", 1)]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse-last-event-id")
def results_sse_resume(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{"i": i} for i in range(5)]})
    everything = events(results(srv, pile["id"], headers=EVENT_STREAM))
    # the header wins over `after`
    response = results(srv, pile["id"], {"after": "0"}, {**EVENT_STREAM, "Last-Event-ID": "2"})
    assert events(response) == everything[3:]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse-past-the-end")
def results_sse_past_end(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{}]})
    assert len(events(results(srv, pile["id"], headers=EVENT_STREAM))) == 1  # the pile is complete
    response = results(srv, pile["id"], headers={**EVENT_STREAM, "Last-Event-ID": "0"})
    assert events(response) == []  # only the `end` event
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse-last-event-id-ahead-of-the-log")
def results_resume_ahead(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "sleep", "items": [{"seconds": 0.2}]})  # position 0 is not written yet
    response = results(srv, pile["id"], headers={**EVENT_STREAM, "Last-Event-ID": "0"})
    assert events(response) == [], "positions <= Last-Event-ID were sent"
    return response


@case("streamPileResults", 200, "GET", RESULTS, "ndjson-open-pile-heartbeat")
def results_heartbeat(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"task": "echo", "items": [{"i": 0}], "open": True})

    def add_and_close() -> None:
        assert add_jobs(srv, pile["id"], {"task": "echo", "items": [{"i": 1}]}).status_code == 202
        close_pile(srv, pile["id"])

    response = srv.request("GET", f"/v1/piles/{pile['id']}/results", stream=True)
    read_past_heartbeat(srv, streamed(response), pile["id"], b"\n\n", add_and_close)
    assert sorted(r["index"] for r in records(response)) == [0, 1]
    return response


@case("streamPileResults", 200, "GET", RESULTS, "sse-open-pile-heartbeat")
def results_sse_heartbeat(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    response = srv.request("GET", f"/v1/piles/{pile['id']}/results", headers=EVENT_STREAM, stream=True)
    read_past_heartbeat(srv, streamed(response), pile["id"], b": keepalive\n\n", lambda: close_pile(srv, pile["id"]))
    assert events(response) == []
    return response


@case("streamPileResults", 400, "GET", RESULTS, "bad-order")
def results_bad_order(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    response = results(srv, pile["id"], {"order": "random"})
    assert response.json()["parameter"] == "order"
    return response


@case("streamPileResults", 400, "GET", RESULTS, "after-below-minus-one")
def results_bad_after(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    return results(srv, pile["id"], {"after": "-2"})


@case("streamPileResults", 400, "GET", RESULTS, "last-event-id-not-a-number")
def results_bad_last_event_id(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    response = results(srv, pile["id"], headers={"Last-Event-ID": "x"})
    assert response.json()["parameter"] == "Last-Event-ID"
    return response


@case("streamPileResults", 400, "GET", RESULTS, "last-event-id-negative")
def results_negative_last_event_id(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    return results(srv, pile["id"], headers={"Last-Event-ID": "-1"})


@case("streamPileResults", 400, "GET", RESULTS, "last-event-id-superscript-digit")
def results_superscript_last_event_id(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": []})
    return results(srv, pile["id"], headers={"Last-Event-ID": "\u00b2"})  # sent as Latin-1: b"\xb2"


@case("streamPileResults", 404, "GET", RESULTS)
def results_unknown(srv: Server, c: Contract) -> requests.Response:
    return results(srv, PILE_ID, {"order": "random"})  # 404 comes first


@case("streamPileResults", 429, "GET", RESULTS, "too-many-streams", server="full_server")
def results_too_many_streams(srv: Server, c: Contract) -> requests.Response:
    pile = created_pile(srv, {"jobs": [], "open": True})
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    held = socket.create_connection((host, int(port)), timeout=10)  # the one stream allowed (no headers
    try:  # come back before the first heartbeat: the pile's `readers` says when it is being served)
        held.sendall(f"GET /v1/piles/{pile['id']}/results HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        for _ in range(100):
            if srv.request("GET", f"/v1/piles/{pile['id']}").json()["readers"] == 1:
                break
            time.sleep(0.02)
        response = results(srv, pile["id"])
        srv.request("POST", f"/v1/piles/{pile['id']}/close")  # ends the held stream: its slot is free again
    finally:
        held.close()
    assert response.json()["retry_after"] == int(response.headers["Retry-After"])
    assert response.json()["type"].endswith("/too-many-streams")
    return response


# POST /v1/map
@case("mapItems", 200, "POST", "/v1/map", "ndjson-submitted-order")
def map_ndjson(srv: Server, c: Contract) -> requests.Response:
    items = [{"seconds": 0.15}, {"seconds": 0.0}, {"seconds": 0.05}]
    assert c.request_body_valid("POST", "/v1/map", {"task": "sleep", "items": items, "timeout": 10})
    response = streamed(map_items(srv, {"task": "sleep", "items": items, "timeout": 10}))
    assert [(r["index"], r["result"]["slept"]) for r in records(response)] == [(0, 0.15), (1, 0.0), (2, 0.05)]
    pile = srv.request("GET", response.headers["Content-Location"]).json()
    assert (pile["size"], pile["done"], pile["closed"]) == (3, 3, True)
    return response


@case("mapItems", 200, "POST", "/v1/map", "sse-completion-order")
def map_sse(srv: Server, c: Contract) -> requests.Response:
    body = {"task": "sleep", "items": [{"seconds": 0.1}, {"seconds": 0.0}], "order": "completion"}
    assert c.request_body_valid("POST", "/v1/map", body)
    response = streamed(map_items(srv, body, EVENT_STREAM))
    assert [(e["id"], e["data"]["index"]) for e in events(response)] == [("0", 1), ("1", 0)]
    return response


@case("mapItems", 200, "POST", "/v1/map", "no-items")
def map_empty(srv: Server, c: Contract) -> requests.Response:
    response = map_items(srv, {"task": "echo", "items": []})
    assert response.content == b""
    return response


@case("mapItems", 400, "POST", "/v1/map")
def map_malformed(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/map", data='{"task": "echo", "items": [}', headers=JSON)


@case("mapItems", 413, "POST", "/v1/map")
def map_too_large(srv: Server, c: Contract) -> requests.Response:
    return map_items(srv, {"task": "echo", "items": [{"pad": "x" * 8192}]})


@case("mapItems", 415, "POST", "/v1/map")
def map_not_json(srv: Server, c: Contract) -> requests.Response:
    return srv.request("POST", "/v1/map", data="task=echo", headers={"Content-Type": "text/plain"})


def _invalid_map(body: Any, field: str) -> Callable[[Server, Contract], requests.Response]:
    def run(srv: Server, c: Contract) -> requests.Response:
        assert not c.request_body_valid("POST", "/v1/map", body)
        response = map_items(srv, body)
        assert field in [e["field"] for e in response.json()["errors"]], response.text
        return response

    return run


for _label, _body, _field in [
    ("bad-order", {"task": "echo", "items": [{}], "order": "random"}, "order"),
    ("jobs-form", {"jobs": [{"task": "echo"}]}, "jobs"),
    ("open-is-not-a-field", {"task": "echo", "items": [{}], "open": False}, "open"),
    ("no-task", {"items": [{}]}, "task"),
    ("bad-item-args", {"task": "sleep", "items": [{"seconds": "soon"}]}, "items[0].args.seconds"),
    ("no-items-unknown-task", {"task": "no-such-task", "items": []}, "task"),
]:
    case("mapItems", 422, "POST", "/v1/map", _label)(_invalid_map(_body, _field))


@case("mapItems", 429, "POST", "/v1/map", server="full_server")
def map_queue_full(srv: Server, c: Contract) -> requests.Response:
    fill_queue(srv)
    response = map_items(srv, {"task": "echo", "items": [{}]})
    assert response.json()["retry_after"] == int(response.headers["Retry-After"])
    return response


# -- operations ----------------------------------------------------------------------------------------------
@case("getMetrics", 200, "GET", "/metrics")
def metrics(srv: Server, c: Contract) -> requests.Response:
    submitted(srv, {"task": "echo", "args": {}}, {"wait": "5"})
    response = srv.request("GET", "/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}  # raises if not the format
    size = srv.request("GET", "/v1/pool").json()["size"]
    assert families["greenpool_pool_size"].samples[0].value == size
    expected = {
        "greenpool_jobs_submitted", "greenpool_jobs_finished", "greenpool_job_queue_wait_seconds",
        "greenpool_job_run_seconds", "greenpool_http_requests", "greenpool_http_request_duration_seconds",
        "greenpool_draining", "greenpool_uptime_seconds",
    }  # fmt: skip
    assert expected <= set(families), sorted(families)
    routes = {s.labels["route"] for s in families["greenpool_http_requests"].samples}
    assert "/v1/jobs" in routes, routes
    return response


@case("getDashboard", 200, "GET", "/")
def dashboard(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "/static/dashboard.js" in response.text and "/static/dashboard.css" in response.text
    return response


@case("getStaticFile", 200, "GET", "/static/{name}", "script")
def static_js(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/static/dashboard.js")
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    return response


@case("getStaticFile", 200, "GET", "/static/{name}", "stylesheet")
def static_css(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/static/dashboard.css")
    assert response.headers["Content-Type"] == "text/css; charset=utf-8"
    return response


@case("getStaticFile", 404, "GET", "/static/{name}", "unknown")
def static_unknown(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/static/app.py")


@case("getStaticFile", 404, "GET", "/static/{name}", "the-page-itself")
def static_index(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/static/index.html")


# -- authentication and idempotency (auth_server has tokens; /metrics behind them) ------------------------------
ALICE = {"Authorization": "Bearer alice-contract-secret-0001"}  # role submit (conftest.AUTH_TOKENS)
ROOT = {"Authorization": "Bearer root-contract-secret-00001"}  # role admin
CHALLENGE = 'Bearer realm="greenpool"'


def _without_token(method: str, path: str) -> Callable[[Server, Contract], requests.Response]:
    def run(srv: Server, c: Contract) -> requests.Response:
        body = {"data": b"{}", "headers": JSON} if method in ("POST", "PATCH") else {}
        response = srv.request(method, _concrete(path), **body)
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        return response

    return run


for _method, _path, _op in Contract(yaml.safe_load(SPEC_PATH.read_text())).operations():
    if "401" in _op["responses"]:
        case(_op["operationId"], 401, _method, _path, "no-token", server="auth_server")(_without_token(_method, _path))


@case("submitJob", 401, "POST", "/v1/jobs", "unknown-token", server="auth_server")
def submit_unknown_token(srv: Server, c: Contract) -> requests.Response:
    headers = {**JSON, "Authorization": "Bearer not-a-configured-token-at-all"}
    response = srv.request("POST", "/v1/jobs", data=json.dumps({"task": "echo"}), headers=headers)
    assert response.headers["WWW-Authenticate"] == CHALLENGE + ', error="invalid_token"'
    return response


@case("getPool", 401, "GET", "/v1/pool", "basic-scheme", server="auth_server")
def pool_basic_scheme(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/v1/pool", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})


@case("resizePool", 403, "PATCH", "/v1/pool", "submit-token", server="auth_server")
def pool_resize_forbidden(srv: Server, c: Contract) -> requests.Response:
    return srv.request("PATCH", "/v1/pool", data=json.dumps({"size": 4}), headers={**JSON, **ALICE})


@case("putNamedPool", 403, "PUT", "/v1/pools/{name}", "submit-token", server="auth_server")
def named_pool_put_forbidden(srv: Server, c: Contract) -> requests.Response:
    return put_pool(srv, "contract-forbidden", {"size": 1}, **ALICE)


@case("deleteNamedPool", 403, "DELETE", "/v1/pools/{name}", "submit-token", server="auth_server")
def named_pool_delete_forbidden(srv: Server, c: Contract) -> requests.Response:
    return srv.request("DELETE", "/v1/pools/default", headers=ALICE)


@case("resizePool", 200, "PATCH", "/v1/pool", "admin-token", server="auth_server")
def pool_resize_admin(srv: Server, c: Contract) -> requests.Response:
    return srv.request("PATCH", "/v1/pool", data=json.dumps({"size": 4}), headers={**JSON, **ROOT})


@case("whoAmI", 200, "GET", "/v1/whoami", "submit-token", server="auth_server")
def whoami_submit(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/whoami", headers=ALICE)
    assert response.json() == {"name": "alice", "role": "submit"}
    return response


@case("whoAmI", 200, "GET", "/v1/whoami", "auth-off")
def whoami_open(srv: Server, c: Contract) -> requests.Response:
    response = srv.request("GET", "/v1/whoami")
    assert response.json() == {"name": None, "role": "admin"}
    return response


@case("getJob", 404, "GET", "/v1/jobs/{job_id}", "another-tokens-job", server="auth_server")
def job_of_another_token(srv: Server, c: Contract) -> requests.Response:
    job = srv.request("POST", "/v1/jobs", data=json.dumps({"task": "echo"}), headers={**JSON, **ROOT}).json()
    return srv.request("GET", f"/v1/jobs/{job['id']}", headers=ALICE)


@case("getMetrics", 200, "GET", "/metrics", "with-token", server="auth_server")
def metrics_with_token(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/metrics", headers=ALICE)


@case("getHealth", 200, "GET", "/healthz", "no-token", server="auth_server")
def health_without_token(srv: Server, c: Contract) -> requests.Response:
    return srv.request("GET", "/healthz")


@case("submitJob", 202, "POST", "/v1/jobs", "idempotent-replay")
def submit_replayed(srv: Server, c: Contract) -> requests.Response:
    body, key = {"task": "sleep", "args": {"seconds": 0.2}}, {**JSON, "Idempotency-Key": "contract-replay-1"}
    first = srv.request("POST", "/v1/jobs", data=json.dumps(body), headers=key)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
    response = srv.request("POST", "/v1/jobs", data=json.dumps(body), headers=key)
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.json()["id"] == first.json()["id"]
    return response


@case("submitJob", 422, "POST", "/v1/jobs", "idempotency-key-reused")
def submit_key_reused(srv: Server, c: Contract) -> requests.Response:
    key = {**JSON, "Idempotency-Key": "contract-reused-1"}
    assert srv.request("POST", "/v1/jobs", data=json.dumps({"task": "echo"}), headers=key).status_code == 202
    response = srv.request("POST", "/v1/jobs", data=json.dumps({"task": "echo", "args": {"a": 1}}), headers=key)
    assert response.json()["type"].endswith("/idempotency-key-reused")
    return response


@case("submitJob", 400, "POST", "/v1/jobs", "bad-idempotency-key")
def submit_bad_key(srv: Server, c: Contract) -> requests.Response:
    headers = {**JSON, "Idempotency-Key": "x" * 256}
    response = srv.request("POST", "/v1/jobs", data=json.dumps({"task": "echo"}), headers=headers)
    assert response.json()["parameter"] == "Idempotency-Key"
    return response


@case("createPile", 201, "POST", "/v1/piles", "idempotent-replay")
def pile_replayed(srv: Server, c: Contract) -> requests.Response:
    body, key = {"task": "echo", "items": [{}, {}]}, {**JSON, "Idempotency-Key": "contract-pile-replay-1"}
    first = srv.request("POST", "/v1/piles", data=json.dumps(body), headers=key)
    assert first.status_code == 201, first.text
    response = srv.request("POST", "/v1/piles", data=json.dumps(body), headers=key)
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.headers["Location"] == first.headers["Location"]
    return response


@pytest.mark.timeout(5)
def test_every_documented_answer_has_a_case(contract: Contract) -> None:
    documented = set()
    for _, _, op in contract.operations():
        documented |= {(op["operationId"], int(code)) for code in op["responses"]}
    covered = {(c.op_id, c.status) for c in CASES}  # known-bug cases count: they still run (xfail)
    assert covered - documented == set(), "cases for answers the document does not list"
    assert documented - covered - COVERED_BY_DRAIN_TEST == set(), "documented answers no case provokes"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "c",
    [
        pytest.param(c, id=f"{c.op_id}-{c.status}-{c.label}", marks=[pytest.mark.xfail(strict=True, reason=c.bug)])
        if c.bug
        else pytest.param(c, id=f"{c.op_id}-{c.status}-{c.label}")
        for c in CASES
    ],
)
def test_real_response_fits_the_document(c: Case, contract: Contract, request: pytest.FixtureRequest) -> None:
    srv: Server = request.getfixturevalue(c.server)
    op, _ = contract.operation(c.method, c.path)
    assert op["operationId"] == c.op_id
    response = c.run(srv, contract)
    assert response.request.method == c.method
    assert response.status_code == c.status, f"{c.method} {response.url} → {response.status_code}: {response.text}"
    contract.check(response, c.method, c.path)


# -- the framework's answers on any path -------------------------------------------------------------------
def _unserved_methods(spec: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for path, item in spec["paths"].items():
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            if method.lower() not in item and not (method == "HEAD" and "get" in item):  # HEAD: as GET
                pairs.append((path, method))
    return pairs


def _concrete(path: str) -> str:
    return path.replace("{job_id}", PILE_ID).replace("{pile_id}", PILE_ID).replace("{name}", "dashboard.js")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("path", "method"), _unserved_methods(yaml.safe_load(SPEC_PATH.read_text())))
def test_unserved_method_gets_documented_405(path: str, method: str, server: Server, contract: Contract) -> None:
    response = server.request(method, _concrete(path), data=b"{}", headers=JSON)
    assert response.status_code == 405, response.text
    doc, pointer = contract.resolve(contract.spec["x-greenpool-common-responses"]["405"], "")
    if method == "HEAD":  # no body; the headers still count
        doc = {k: v for k, v in doc.items() if k != "content"}
    contract.check_documented(response, doc, pointer, f"{method} {path}")
    documented = {m.upper() for m in contract.spec["paths"][path] if m.upper() in falcon.COMBINED_METHODS}
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed - {"OPTIONS"} == documented | ({"HEAD"} if "GET" in documented else set())


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "path",
    ["/v1", "/v2/jobs", "/v1/jobs/abc/extra", "/v1/pools/db/x", "/v1/piles/abc/results/0", "/static", "/index.html"],
)
def test_unknown_path_gets_documented_404(path: str, server: Server, contract: Contract) -> None:
    response = server.request("GET", path)
    assert response.status_code == 404, response.text
    doc, pointer = contract.resolve(contract.spec["x-greenpool-common-responses"]["404"], "")
    contract.check_documented(response, doc, pointer, f"GET {path}")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", ["/v1/jobs", "/healthz"])
def test_undefined_method_gets_documented_400(path: str, server: Server, contract: Contract) -> None:
    response = server.request("FROB", path)
    assert response.status_code == 400, response.text
    doc, pointer = contract.resolve(contract.spec["x-greenpool-common-responses"]["400"], "")
    contract.check_documented(response, doc, pointer, f"FROB {path}")


# -- a draining server ---------------------------------------------------------------------------------------
def _read_responses(sock: socket.socket, method_for: list[str], url: str) -> list[requests.Response]:
    """Every HTTP/1.1 response on `sock` until the server closes it (bodies have a Content-Length)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    responses = []
    for method in method_for:
        if not data:
            break
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        response = requests.Response()
        response.status_code = int(status_line.split()[1])
        pairs = (line.split(":", 1) for line in header_lines)
        response.headers = CaseInsensitiveDict({name.strip(): value.strip() for name, value in pairs})
        length = int(response.headers.get("Content-Length", "0"))
        response._content, data = data[:length], data[length:]
        response.url = url
        response.request = requests.Request(method, url).prepare()
        responses.append(response)
    return responses


@pytest.mark.timeout(25)
def test_draining_server_answers_fit_the_document(tmp_path: Path, contract: Contract) -> None:
    """After SIGTERM the worker still answers requests already pipelined behind one in flight: with 503."""
    srv = start_server(tmp_path, {"GREENPOOL_POOL_SIZE": "8"})
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        open_pile = srv.request("POST", "/v1/piles", json={"jobs": [], "open": True}).json()
        add_to_open_pile = f"/v1/piles/{open_pile['id']}/jobs"

        def post(path: str, body: Any) -> bytes:
            data = json.dumps(body).encode()
            head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(data)}"
            return head.encode() + b"\r\n\r\n" + data

        followers = [  # (method, path template, the raw request)
            ("POST", "/v1/jobs", post("/v1/jobs", {"task": "echo", "args": {}})),
            ("GET", "/readyz", b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"),
            ("POST", "/v1/piles", post("/v1/piles", {"task": "echo", "items": [{}]})),
            ("POST", "/v1/piles/{pile_id}/jobs", post(add_to_open_pile, {"jobs": [{"task": "echo"}]})),
            ("POST", "/v1/map", post("/v1/map", {"task": "echo", "items": [{}]})),
        ]
        conns = []
        for method, path, follower in followers:
            job = srv.request("POST", "/v1/jobs", json={"task": "sleep", "args": {"seconds": 1}}).json()
            sock = socket.create_connection((host, int(port)), timeout=15)
            # a long-poll that is in flight when the drain starts, then the request under test behind it
            sock.sendall(f"GET /v1/jobs/{job['id']}?wait=10 HTTP/1.1\r\nHost: t\r\n\r\n".encode() + follower)
            conns.append((sock, method, path))
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        for sock, method, path in conns:
            with sock:
                responses = _read_responses(sock, ["GET", method], srv.url + path)
            assert [r.status_code for r in responses] == [200, 503], [r.text for r in responses]
            contract.check(responses[0], "GET", "/v1/jobs/{job_id}")
            assert responses[0].json()["status"] == "succeeded"  # running jobs finish within the grace period
            contract.check(responses[1], method, path)
        assert srv.proc.wait(10) == 0, srv.log()
    finally:
        srv.stop()

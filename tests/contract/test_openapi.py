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
from openapi_contract import REPO, SPEC_PATH, Contract, Server, start_server
from openapi_spec_validator import validate as validate_openapi
from requests.structures import CaseInsensitiveDict

# Routes the app serves that the document does not list yet: their issue adds them to openapi.yaml (and
# removes them from here). The test below fails as soon as one is documented or no longer served.
NOT_YET_DOCUMENTED = {
    "/v1/piles",
    "/v1/piles/{pile_id}",
    "/v1/piles/{pile_id}/jobs",
    "/v1/piles/{pile_id}/close",
    "/v1/piles/{pile_id}/results",
    "/v1/map",
}

# Documented answers provoked by test_draining_server_answers_fit_the_document rather than by a Case.
COVERED_BY_DRAIN_TEST = {("submitJob", 503), ("getReady", 503)}

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
app = create_app(Config(pool_size=1, log_level="warning"))
routes = falcon.inspect.inspect_app(app).routes
print(json.dumps({r.path: [m.method for m in r.methods if not m.internal] for r in routes}))
"""


def _served_routes() -> dict[str, set[str]]:
    """{path template: methods} of `create_app(Config(...))` (falcon's implicit OPTIONS and 405s left out).

    Built in a subprocess: the app's engine spawns green threads on the hub of the thread that builds it
    and registers a drain hook, neither of which should outlive this test in the pytest process.
    """
    out = subprocess.run(
        [sys.executable, "-c", _LIST_ROUTES], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    routes = json.loads(out.stdout.strip().splitlines()[-1])
    return {path: set(methods) - {"OPTIONS"} for path, methods in routes.items()}


@pytest.mark.timeout(20)
def test_document_lists_exactly_the_served_routes(contract: Contract) -> None:
    served = _served_routes()
    documented: dict[str, set[str]] = {}
    for method, path, _ in contract.operations():
        documented.setdefault(path, set()).add(method)

    pending = {path: methods for path, methods in served.items() if path in NOT_YET_DOCUMENTED}
    served = {path: methods for path, methods in served.items() if path not in NOT_YET_DOCUMENTED}
    assert set(pending) == NOT_YET_DOCUMENTED, (
        f"no longer served, drop from NOT_YET_DOCUMENTED: {sorted(NOT_YET_DOCUMENTED - set(pending))}"
    )
    assert not NOT_YET_DOCUMENTED & set(documented), (
        f"now documented, drop from NOT_YET_DOCUMENTED: {sorted(NOT_YET_DOCUMENTED & set(documented))}"
    )
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
            if method.lower() not in item:
                pairs.append((path, method))
    return pairs


def _concrete(path: str) -> str:
    return path.replace("{job_id}", "0123456789abcdef0123456789abcdef")


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
    assert allowed - {"OPTIONS"} == documented


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", ["/v1", "/v2/jobs", "/v1/jobs/abc/extra", "/v1/pools"])
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
    srv = start_server(tmp_path, {"GREENPOOL_POOL_SIZE": "2"})
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        body = json.dumps({"task": "echo", "args": {}}).encode()
        followers = {
            ("POST", "/v1/jobs"): b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
            ("GET", "/readyz"): b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        }
        conns = []
        for (method, path), follower in followers.items():
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

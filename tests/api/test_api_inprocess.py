"""The HTTP API in-process (falcon.testing, no server) where a real server adds nothing: validation and its
field paths, roles, query bounds, idempotency, piles and their streams, on an injected memory store and ids.
Real gunicorn stays for the worker, HTTP/1.1, drain and contract tests."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import falcon.testing
import pytest

import pool_core
from service.api import app as app_module
from service.api.app import Services, create_app
from service.config import Config
from service.storage import MemoryStore

PROBLEM = "application/problem+json"
SUBMIT = {"Authorization": "Bearer ann-secret-0123456789"}
ADMIN = {"Authorization": "Bearer ops-secret-0123456789"}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[falcon.testing.TestClient]:
    """The app with tokens (ann: submit, ops: admin), pool size 2, counted ids; no drain hook left behind."""
    monkeypatch.setattr(app_module.lifecycle, "on_drain", lambda callback: callback)
    monkeypatch.setattr(app_module.logs, "configure", lambda level: None)
    tokens = "ann:submit:ann-secret-0123456789,ops:admin:ops-secret-0123456789"
    config = Config(pool_size=2, max_queued=10, max_queued_per_client=10, log_level="warning", tokens=tokens)
    ids = (f"id{n}" for n in itertools.count(1))
    app = create_app(config, Services(store=MemoryStore(100), ids=ids))
    yield falcon.testing.TestClient(app)
    for thread in app.engine.threads():
        thread.kill()


def problem(resp: falcon.testing.Result, status: int, slug: str) -> dict:
    """The problem document of `resp`, asserting its status, media type and type."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM, resp.headers
    document = resp.json
    assert document["status"] == status and document["type"].endswith("/" + slug), document
    return document


@pytest.mark.parametrize(
    ("body", "slug", "field"),
    [
        ({"task": "sleep", "args": {"seconds": "x"}}, "validation-failed", "args.seconds"),
        ({"task": "nope"}, "unknown-task", "task"),
        ({"task": "echo", "timeout": -1}, "validation-failed", "timeout"),
        ({"task": "echo", "args": [1]}, "validation-failed", "args"),
    ],
)
def test_a_bad_job_is_422_naming_its_field(client: falcon.testing.TestClient, body: dict, slug: str,
                                          field: str) -> None:  # fmt: skip
    document = problem(client.simulate_post("/v1/jobs", json=body, headers=SUBMIT), 422, slug)
    assert field in [error["field"] for error in document["errors"]], document
    assert client.simulate_get("/v1/jobs", headers=SUBMIT).json["jobs"] == []  # nothing was accepted


def test_a_body_that_is_not_json_is_400(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_post("/v1/jobs", body="[1", headers={**SUBMIT, "Content-Type": "application/json"})
    assert "not valid JSON" in problem(resp, 400, "bad-request")["detail"]


def test_roles_decide_who_may_resize(client: falcon.testing.TestClient) -> None:
    anonymous = client.simulate_get("/v1/pool")
    problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    problem(client.simulate_patch("/v1/pool", json={"size": 3}, headers=SUBMIT), 403, "forbidden")
    assert client.simulate_patch("/v1/pool", json={"size": 983.0}, headers=ADMIN).json["size"] == 983
    bad = problem(client.simulate_patch("/v1/pool", json={"size": -1}, headers=ADMIN), 422, "validation-failed")
    assert bad["errors"][0]["field"] == "size" and "0 to" in bad["errors"][0]["message"]
    assert client.simulate_get("/v1/pool", headers=SUBMIT).json["size"] == 983
    assert client.simulate_get("/v1/whoami", headers=SUBMIT).json == {"name": "ann", "role": "submit"}


@pytest.mark.parametrize(("path", "parameter"), [("/v1/jobs?limit=0", "limit"), ("/v1/jobs?limit=1001", "limit"),
                                                 ("/v1/jobs?status=done", "status")])  # fmt: skip
def test_query_parameters_out_of_bounds_are_400_naming_them(client: falcon.testing.TestClient, path: str,
                                                           parameter: str) -> None:  # fmt: skip
    assert problem(client.simulate_get(path, headers=SUBMIT), 400, "bad-request")["parameter"] == parameter


def test_an_idempotency_key_returns_the_first_job_and_refuses_another_body(client: falcon.testing.TestClient) -> None:
    keyed = {**SUBMIT, "Idempotency-Key": "k1"}
    first = client.simulate_post("/v1/jobs", json={"task": "echo"}, headers=keyed)
    again = client.simulate_post("/v1/jobs", json={"task": "echo"}, headers=keyed)
    assert first.status_code == again.status_code == 202 and first.json["id"] == again.json["id"]
    problem(client.simulate_post("/v1/jobs", json={"task": "echo", "args": {"b": 2}}, headers=keyed), 422,
            "idempotency-key-reused")  # fmt: skip
    assert len(client.simulate_get("/v1/jobs", headers=SUBMIT).json["jobs"]) == 1


def test_a_job_waited_for_ends_in_the_answer_and_cannot_be_cancelled(client: falcon.testing.TestClient) -> None:
    done = client.simulate_post("/v1/jobs?wait=5", json={"task": "echo", "args": {"a": 1}}, headers=SUBMIT)
    assert done.status_code == 200 and done.json["status"] == "succeeded" and done.json["result"] == {"a": 1}
    ended = client.simulate_delete(f"/v1/jobs/{done.json['id']}", headers=ADMIN)
    assert problem(ended, 409, "job-already-ended")["job_status"] == "succeeded"
    problem(client.simulate_get("/v1/jobs/nope", headers=SUBMIT), 404, "job-not-found")
    too_long = client.simulate_post("/v1/jobs?wait=61", json={"task": "echo"}, headers=SUBMIT)
    assert problem(too_long, 400, "bad-request")["parameter"] == "wait"


def test_a_pile_streams_every_result_as_ndjson_and_sse(client: falcon.testing.TestClient) -> None:
    created = client.simulate_post("/v1/piles", json={"task": "echo", "items": [{"i": 1}, {"i": 2}]}, headers=SUBMIT)
    assert created.status_code == 201 and created.json["size"] == 2 and created.json["closed"] is True
    pile = created.json["id"]
    ndjson = client.simulate_get(f"/v1/piles/{pile}/results?order=submitted", headers=SUBMIT)
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [(r["index"], r["status"], r["result"]) for r in records] == [(0, "succeeded", {"i": 1}),
                                                                          (1, "succeeded", {"i": 2})]  # fmt: skip
    sse = client.simulate_get(f"/v1/piles/{pile}/results", headers={**SUBMIT, "Accept": "text/event-stream",
                                                                     "Last-Event-ID": "0"})  # fmt: skip
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = [block for block in sse.text.split("\n\n") if block.strip()]
    assert events[0].startswith("id: 1\n") and events[-1].startswith("event: end"), events  # resumed after 0
    assert len(events) == 2
    summary = client.simulate_get(f"/v1/piles/{pile}", headers=SUBMIT).json
    assert summary["done"] == summary["succeeded"] == 2 and summary["pending"] == 0
    problem(client.simulate_get("/v1/piles/nope", headers=SUBMIT), 404, "pile-not-found")


def test_the_pool_history_has_one_sample_a_second(client: falcon.testing.TestClient) -> None:
    deadline = time.monotonic() + 10
    while len((history := client.simulate_get("/v1/pool/history", headers=SUBMIT).json)["samples"]) < 2:
        assert time.monotonic() < deadline, history
        pool_core.sleep(0.05)  # lets the engine's sampler run
    first, second = history["samples"][:2]
    assert set(first) == {"t", "size", "running", "held", "free", "waiting", "queued"} and first["size"] == 2
    assert 0.5 < second["t"] - first["t"] < 3 and second["t"] <= history["now"]

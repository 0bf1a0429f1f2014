"""One client cannot take the whole queue (`GREENPOOL_MAX_QUEUED_PER_CLIENT`, issue #11), against a real server.

Pool size 1 held by a long `sleep`, `MAX_QUEUED=20`, 5 per client: a client's 6th queued job is 429 with
`Retry-After` while another client still gets in; a request that alone asks for more than 5 is 413; the count
goes down as its jobs leave the queue (cancelled, or started). A client is its token's name with tokens on,
else its address (127.0.0.1 and 127.0.0.2 here).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest
import requests
from serverkit import Server, start_server

PROBLEM = "application/problem+json"
SECRETS = {"carol": "carol-secret-0123456789", "alice": "alice-secret-0123456789", "bob": "bob-secret-0123456789"}
QUEUE = {"GREENPOOL_POOL_SIZE": "1", "GREENPOOL_MAX_QUEUED": "20", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "5",
         "GREENPOOL_GRACEFUL_TIMEOUT": "1"}
LONG = {"task": "sleep", "args": {"seconds": 60}}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with tokens for carol, alice and bob (all `submit`)."""
    tokens = ",".join(f"{name}:submit:{secret}" for name, secret in SECRETS.items())
    server = start_server(tmp_path_factory.mktemp("per-client"), env={**QUEUE, "GREENPOOL_TOKENS": tokens})
    yield server
    server.stop()


def as_(server: Server, name: str, method: str, path: str, body: object = None) -> requests.Response:
    """`method path` with `name`'s token."""
    headers = {"Authorization": f"Bearer {SECRETS[name]}"}
    return requests.request(method, server.url + path, json=body, headers=headers, timeout=10)


def problem(resp: requests.Response, status: int) -> dict:
    """The problem document of `resp`, asserting its status and media type."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith(PROBLEM), resp.headers
    return resp.json()


def wait_status(server: Server, name: str, job_id: str, status: str) -> None:
    """Poll (bounded) until `name`'s job has `status`."""
    deadline = time.monotonic() + 10
    while (now := as_(server, name, "GET", f"/v1/jobs/{job_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, f"job {job_id} is still {now}"
        time.sleep(0.02)


def test_a_client_over_its_share_gets_429_while_another_gets_in(tokened: Server) -> None:
    runner = as_(tokened, "carol", "POST", "/v1/jobs", LONG).json()["id"]
    wait_status(tokened, "carol", runner, "running")
    alice = [as_(tokened, "alice", "POST", "/v1/jobs", LONG) for _ in range(5)]
    assert [r.status_code for r in alice] == [202] * 5
    sixth = as_(tokened, "alice", "POST", "/v1/jobs", LONG)
    body = problem(sixth, 429)
    assert body["type"].endswith("/queue-full") and "this client" in body["detail"], body
    assert 1 <= int(sixth.headers["Retry-After"]) <= 60 and body["retry_after"] == int(sixth.headers["Retry-After"])
    problem(as_(tokened, "alice", "POST", "/v1/piles", {"jobs": [LONG]}), 429)
    problem(as_(tokened, "alice", "POST", "/v1/map", {"task": "echo", "items": [{}]}), 429)
    bob = as_(tokened, "bob", "POST", "/v1/jobs", LONG)
    assert bob.status_code == 202, bob.text
    for resp in alice:
        assert as_(tokened, "alice", "DELETE", f"/v1/jobs/{resp.json()['id']}").status_code == 200
    again = [as_(tokened, "alice", "POST", "/v1/jobs", LONG) for _ in range(5)]
    assert [r.status_code for r in again] == [202] * 5, again[-1].text
    problem(as_(tokened, "alice", "POST", "/v1/jobs", LONG), 429)
    # bob's job is next in line; then alice's first: when it starts, alice has room for one more
    as_(tokened, "carol", "DELETE", f"/v1/jobs/{runner}")
    as_(tokened, "bob", "DELETE", f"/v1/jobs/{bob.json()['id']}")
    wait_status(tokened, "alice", again[0].json()["id"], "running")
    last = as_(tokened, "alice", "POST", "/v1/jobs", LONG)
    assert last.status_code == 202, last.text
    problem(as_(tokened, "alice", "POST", "/v1/jobs", LONG), 429)
    start = time.monotonic()
    assert tokened.get("/healthz").status_code == 200 and time.monotonic() - start < 0.1
    accepted = {r.json()["id"] for r in [*alice, *again, last]}
    for job_id in accepted - {r.json()["id"] for r in alice}:  # every accepted job ends, exactly once
        assert as_(tokened, "alice", "DELETE", f"/v1/jobs/{job_id}").status_code == 200
    listed = as_(tokened, "alice", "GET", "/v1/jobs?limit=1000").json()["jobs"]
    assert {j["id"] for j in listed} == accepted and {j["status"] for j in listed} == {"cancelled"}
    assert as_(tokened, "carol", "GET", f"/v1/jobs/{runner}").json()["status"] == "cancelled"


def test_a_request_larger_than_one_clients_share_is_413(tokened: Server) -> None:
    six = [{"task": "echo"}] * 6
    body = problem(as_(tokened, "bob", "POST", "/v1/piles", {"jobs": six}), 413)
    assert body["limit"] == 5 and "one client" in body["detail"], body
    pile = as_(tokened, "bob", "POST", "/v1/piles", {"jobs": [], "open": True}).json()["id"]
    body = problem(as_(tokened, "bob", "POST", f"/v1/piles/{pile}/jobs", {"jobs": six}), 413)
    assert body["limit"] == 5 and "one client" in body["detail"], body
    body = problem(as_(tokened, "bob", "POST", "/v1/map", {"task": "echo", "items": [{}] * 6}), 413)
    assert body["limit"] == 5, body
    assert as_(tokened, "bob", "GET", f"/v1/piles/{pile}").json()["size"] == 0


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same queue without tokens, bound to every loopback address so 127.0.0.2 can call it."""
    server = start_server(tmp_path_factory.mktemp("per-address"), env=QUEUE)
    yield server
    server.stop()


def post_from(server: Server, source: str, body: object) -> tuple[int, dict]:
    """POST /v1/jobs from the local address `source`; (status, body)."""
    conn = http.client.HTTPConnection(*server.address, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/v1/jobs", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_without_tokens_a_client_is_its_address(open_server: Server) -> None:
    status, runner = post_from(open_server, "127.0.0.3", LONG)
    assert status == 202
    deadline = time.monotonic() + 10
    while open_server.get(f"/v1/jobs/{runner['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    mine = [post_from(open_server, "127.0.0.1", LONG) for _ in range(5)]
    assert [status for status, _ in mine] == [202] * 5
    status, body = post_from(open_server, "127.0.0.1", LONG)
    assert status == 429 and "this client" in body["detail"], body
    status, other = post_from(open_server, "127.0.0.2", LONG)
    assert status == 202
    for job in [runner, other, *(job for _, job in mine)]:  # every accepted job ends
        assert open_server.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    status, again = post_from(open_server, "127.0.0.1", LONG)
    assert status == 202
    assert open_server.delete(f"/v1/jobs/{again['id']}").json()["status"] == "cancelled"

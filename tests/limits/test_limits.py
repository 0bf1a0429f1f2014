"""Every size, count and time limit of the service, against a real server (limits from conftest.LIMITS).

Size caps answer 413 with a `limit` member (bytes or jobs), the stream cap 429 with `Retry-After`, a too
large result ends its job `failed` with `ResultTooLarge`; slow clients are cut off after the header/body
timeouts however slowly they keep sending.
"""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import pytest
import requests
from serverkit import Server, start_server

PROBLEM = "application/problem+json"
pytestmark = pytest.mark.timeout(60)


def problem(resp: requests.Response, status: int) -> dict:
    """The problem document of `resp`, asserting its status and media type."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == status and body["detail"], body
    return body


def post(server: Server, path: str, body: object) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=10)


def submitted(server: Server) -> int:
    return requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"]


# -- sizes and counts ------------------------------------------------------------------------------------
def test_body_larger_than_max_body_bytes_is_413(limited: Server) -> None:
    body = problem(post(limited, "/v1/jobs", {"task": "echo", "args": {"s": "x" * 9000}}), 413)
    assert body["limit"] == 8192


def test_args_larger_than_max_args_bytes_is_413_naming_the_job(limited: Server) -> None:
    big = {"s": "x" * 1000}  # 1008 bytes as JSON
    body = problem(post(limited, "/v1/jobs", {"task": "echo", "args": big}), 413)
    assert body["limit"] == 1000 and body["field"] == "args", body
    body = problem(post(limited, "/v1/piles", {"jobs": [{"task": "echo"}, {"task": "echo", "args": big}]}), 413)
    assert body["field"] == "jobs[1].args", body
    body = problem(post(limited, "/v1/piles", {"task": "echo", "items": [{}, {}, big]}), 413)
    assert body["field"] == "items[2]", body
    body = problem(post(limited, "/v1/map", {"task": "echo", "items": [big]}), 413)
    assert body["field"] == "items[0]", body
    before = submitted(limited)
    just = {"s": "x" * 990}  # 998 bytes: within the limit
    assert post(limited, "/v1/jobs", {"task": "echo", "args": just}).status_code == 202
    # a body over the args limit whose jobs each are within it is fine
    assert post(limited, "/v1/piles", {"task": "echo", "items": [just, just]}).status_code == 201
    assert submitted(limited) == before + 3


def test_result_larger_than_max_result_bytes_fails_the_job(limited: Server) -> None:
    ok = requests.post(limited.url + "/v1/jobs?wait=5", json={"task": "limit_big_result", "args": {"size": 1990}},
                       timeout=10).json()  # fmt: skip
    assert ok["status"] == "succeeded" and len(ok["result"]) == 1990
    job = requests.post(limited.url + "/v1/jobs?wait=5", json={"task": "limit_big_result", "args": {"size": 5000}},
                        timeout=10).json()  # fmt: skip
    assert job["status"] == "failed" and job["result"] is None, job
    assert job["error"]["type"] == "ResultTooLarge" and "2000" in job["error"]["message"], job


def test_pile_larger_than_max_pile_size_is_413(limited: Server) -> None:
    before = submitted(limited)
    body = problem(post(limited, "/v1/piles", {"task": "echo", "items": [{}] * 6}), 413)
    assert body["limit"] == 5
    problem(post(limited, "/v1/piles", {"jobs": [{"task": "echo"}] * 6}), 413)
    pile = post(limited, "/v1/piles", {"task": "echo", "items": [{}] * 3, "open": True})
    assert pile.status_code == 201
    pile_id = pile.json()["id"]
    body = problem(post(limited, f"/v1/piles/{pile_id}/jobs", {"task": "echo", "items": [{}] * 3}), 413)
    assert body["limit"] == 5 and "has 3 jobs" in body["detail"], body
    assert post(limited, f"/v1/piles/{pile_id}/jobs", {"task": "echo", "items": [{}] * 2}).status_code == 202
    assert post(limited, f"/v1/piles/{pile_id}/close", {}).status_code == 200
    assert submitted(limited) == before + 5  # nothing of a refused request was accepted


def test_map_with_more_than_max_map_items_is_413(limited: Server) -> None:
    before = submitted(limited)
    body = problem(post(limited, "/v1/map", {"task": "echo", "items": [{"i": i} for i in range(4)]}), 413)
    assert body["limit"] == 3
    resp = post(limited, "/v1/map", {"task": "echo", "items": [{"i": i} for i in range(3)]})
    assert resp.status_code == 200 and len(resp.text.split()) == 3
    assert submitted(limited) == before + 3


def test_concurrent_streams_per_client_are_capped_with_429(limited: Server) -> None:
    pile_id = post(limited, "/v1/piles", {"jobs": [], "open": True}).json()["id"]
    results = f"{limited.url}/v1/piles/{pile_id}/results"
    held = [requests.get(results, stream=True, timeout=10) for _ in range(2)]
    try:
        assert [r.status_code for r in held] == [200, 200]
        third = requests.get(results, timeout=10)
        body = problem(third, 429)
        assert third.headers["Retry-After"] == str(body["retry_after"]) and int(body["retry_after"]) >= 1
        before = submitted(limited)
        problem(post(limited, "/v1/map", {"task": "echo", "items": [{}]}), 429)
        assert submitted(limited) == before, "a map refused for its stream must not leave jobs behind"
    finally:
        held[0].close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the reader leaving at once (the worker's disconnect watcher)
        resp = requests.get(results, stream=True, timeout=10)
        if resp.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        assert resp.status_code == 200, resp.text
        post(limited, f"/v1/piles/{pile_id}/close", {})
        assert resp.text == "" or set(resp.text) <= {"\n"}  # an empty pile: the stream just ends
    finally:
        resp.close()
        held[1].close()


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A server that runs nothing (pool size 0) and queues at most 3 jobs (all of them one client's)."""
    env = {"GREENPOOL_POOL_SIZE": "0", "GREENPOOL_MAX_QUEUED": "3", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "3"}
    server = start_server(tmp_path_factory.mktemp("full"), env=env)
    yield server
    server.stop()


def test_queue_full_is_429_with_retry_after_and_a_pile_larger_than_the_queue_is_413(full: Server) -> None:
    for _ in range(3):
        assert post(full, "/v1/jobs", {"task": "echo"}).status_code == 202
    resp = post(full, "/v1/jobs", {"task": "echo"})
    body = problem(resp, 429)
    assert 1 <= int(resp.headers["Retry-After"]) <= 60 and body["retry_after"] == int(resp.headers["Retry-After"])
    body = problem(post(full, "/v1/piles", {"task": "echo", "items": [{}] * 4}), 413)
    assert body["limit"] == 3


# -- slow clients ----------------------------------------------------------------------------------------
def _closed_after(sock: socket.socket, trickle: bytes, pause: float = 0.2, limit: float = 10.0) -> tuple[float, bytes]:
    """Send `trickle` one byte every `pause` s (starting now) until the server closes the connection;
    return (seconds until it did, what it sent)."""
    start = time.monotonic()
    sock.setblocking(False)
    received = b""
    for i in range(int(limit / pause)):
        try:
            sock.send(trickle[i % len(trickle) : i % len(trickle) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start, received
        end = time.monotonic() + pause
        while (left := end - time.monotonic()) > 0:
            try:
                if select.select([sock], [], [], left)[0]:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return time.monotonic() - start, received
                    received += chunk
            except ConnectionResetError:
                return time.monotonic() - start, received
    raise AssertionError(f"the server kept a slow client for more than {limit}s (got {received!r})")


def test_slowloris_headers_are_cut_off_after_header_timeout(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        seconds, received = _closed_after(sock, b"X-Slow: " + b"a" * 200)
    assert received == b"", received  # dropped, nothing sent
    assert 1.2 < seconds < 3.0, seconds  # GREENPOOL_HEADER_TIMEOUT=1.5 from the accept
    assert requests.get(limited.url + "/healthz", timeout=5).status_code == 200


def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""
    assert 1.2 < time.monotonic() - start < 3.0  # not the 10 s keep-alive: the first request is bounded too


def test_slowloris_on_a_keepalive_connection_is_cut_off_after_header_timeout(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first or not first.rstrip().endswith(b"}"):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(2.0)  # idle longer than the header timeout: the keep-alive wait (10 s) applies here
        seconds, received = _closed_after(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200)
    assert received == b"", received
    assert 1.2 < seconds < 3.0, seconds  # from the first byte of the second request


def test_a_slow_body_gets_408_after_body_timeout(limited: Server) -> None:
    before = submitted(limited)
    with socket.create_connection(("127.0.0.1", limited.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n")  # fmt: skip
        seconds, received = _closed_after(sock, b'{"task": "echo", "args": {"s": "' + b"a" * 600)
    assert 1.2 < seconds < 3.0, seconds
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert b"application/problem+json" in head
    assert json.loads(body)["status"] == 408
    assert submitted(limited) == before


def test_without_keepalive_the_first_request_is_bounded_too(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"GREENPOOL_HEADER_TIMEOUT": "1"}, args=("--keep-alive", "0"))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            seconds, _ = _closed_after(sock, b"X-Slow: " + b"a" * 200)
        assert 0.8 < seconds < 2.5, seconds
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()

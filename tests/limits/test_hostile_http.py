"""HTTP/1.1 duties and slow readers against a real server (issue #11: Host, HEAD, point 5, point 8).

A request without Host is 400 (RFC 9112 §3.2); one gunicorn cannot parse gets problem+json with its
status; HEAD is answered on every GET route with the GET's status and headers and no body, on the fast path
and gunicorn's; a client that stops reading its responses is cut off after GREENPOOL_SEND_TIMEOUT, which
frees its connection slot (twenty such clients with WORKER_CONNECTIONS=20 do not keep /healthz away) and its
result stream's slot; an `http` job's url with port 0 is 422 naming `url`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests
from hostile import assert_healthy, exchange, problem_of, split_response
from serverkit import Server, start_server

pytestmark = pytest.mark.timeout(120)

SEND_TIMEOUT = 1.5
ENV = {
    "GREENPOOL_PLUGINS": "tests.limits.hostile_tasks",
    "GREENPOOL_SEND_TIMEOUT": str(SEND_TIMEOUT),
    "GREENPOOL_HEADER_TIMEOUT": "2",
    "GREENPOOL_BODY_TIMEOUT": "2",
    "GREENPOOL_MAX_STREAMS_PER_CLIENT": "2",
    "GREENPOOL_STREAM_HEARTBEAT": "0.2",
    "GREENPOOL_HTTP_ALLOW": "127.0.0.2/32",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("hostile-http"), env=ENV,
                       args=("--keep-alive", "2", "--worker-connections", "20"))  # fmt: skip
    yield srv
    srv.stop()


def _pile(server: Server, **body: object) -> str:
    resp = requests.post(server.url + "/v1/piles", json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


# -- Host ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["fast path", "gunicorn"])
@pytest.mark.parametrize("request_line", ["GET /healthz", "GET /v1/jobs", "POST /v1/jobs"])
def test_http11_request_without_host_is_400(server: Server, request_line: str, via: str) -> None:
    extra = "X_Via: gunicorn\r\n" if via == "gunicorn" else ""
    body = b'{"task":"echo"}'
    head = f"{request_line} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
    before = requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"]
    raw = exchange(server, head.encode() + b"Connection: close\r\n\r\n" + body)
    document = problem_of(raw, 400)
    assert "Host" in document["detail"], document
    assert requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"] == before
    # HTTP/1.0 may leave Host out
    code, _, _ = split_response(exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert code == 200
    assert_healthy(server)


# -- requests gunicorn cannot parse ------------------------------------------------------------------------
UNPARSABLE = {
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", 431),  # fmt: skip
    "header too large": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "bad method": (b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad version": (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "binary garbage": (b"\x00\x01\x02\r\n\r\n", 400),
    "space in a header name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
    "two content lengths": (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                            b"Content-Length: 3\r\n\r\n{}", 400),  # fmt: skip
    "unknown transfer coding": (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", list(UNPARSABLE))
def test_a_request_gunicorn_cannot_parse_gets_problem_json(server: Server, case: str) -> None:
    data, status = UNPARSABLE[case]
    before = requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"]
    document = problem_of(exchange(server, data), status)
    assert document["title"] and document["type"], document
    assert requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"] == before
    assert_healthy(server)


# -- HEAD ------------------------------------------------------------------------------------------------
def _get_paths(server: Server) -> list[str]:
    job = requests.post(server.url + "/v1/jobs?wait=5", json={"task": "echo"}, timeout=10).json()["id"]
    pile = _pile(server, jobs=[{"task": "echo"}])
    return ["/healthz", "/readyz", "/openapi.yaml", "/metrics", "/", "/static/dashboard.js", "/v1/tasks",
            "/v1/jobs", f"/v1/jobs/{job}", f"/v1/piles/{pile}", f"/v1/piles/{pile}/results", "/v1/pool",
            "/v1/whoami", "/v1/jobs/nope"]  # fmt: skip


@pytest.mark.parametrize("via", ["fast path", "gunicorn"])
def test_head_is_answered_on_every_get_route_with_the_get_headers(server: Server, via: str) -> None:
    extra = "X_Via: gunicorn\r\n" if via == "gunicorn" else ""
    for path in _get_paths(server):
        got = split_response(exchange(server, f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
                                      .encode()))  # fmt: skip
        raw = exchange(server, f"HEAD {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode())
        status, headers, body = split_response(raw)
        assert status == got[0], (path, raw)
        assert body == b"", (path, raw)
        # framing (Transfer-Encoding) may be left out of a HEAD answer, as gunicorn does (RFC 9110 §9.3.2)
        for name in ("content-type", "cache-control", "location", "x-accel-buffering", "allow"):
            assert headers.get(name) == got[1].get(name), (path, name, headers, got[1])
        assert ("content-length" in headers) == ("content-length" in got[1]), (path, headers, got[1])
        if path not in ("/metrics", "/v1/pool"):  # their counters move between the two requests
            assert headers.get("content-length") == got[1].get("content-length"), (path, headers, got[1])


def test_head_on_a_stream_frees_its_stream_slot(server: Server) -> None:
    results = f"{server.url}/v1/piles/{_pile(server, jobs=[], open=True)}/results"
    for _ in range(5):  # more than GREENPOOL_MAX_STREAMS_PER_CLIENT=2: none of them is left holding a slot
        resp = requests.head(results, timeout=5)
        assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    held = [requests.get(results, stream=True, timeout=5) for _ in range(2)]
    try:
        assert [r.status_code for r in held] == [200, 200]
    finally:
        for r in held:
            r.close()
    assert_healthy(server)


# -- slow readers (GREENPOOL_SEND_TIMEOUT) ------------------------------------------------------------------
def _non_reader(server: Server, requests_count: int) -> socket.socket:
    """A connection with a small receive buffer that pipelines `requests_count` GET /openapi.yaml requests
    (about 64 KB of answer each) and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(server.address)
    sock.sendall(b"GET /openapi.yaml HTTP/1.1\r\nHost: t\r\n\r\n" * requests_count)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Drain `sock` fast; True if the server closed it (EOF or reset) within `within` seconds."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            continue
    return False


def test_twenty_pipelining_non_readers_are_cut_off_and_healthz_stays_reachable(server: Server) -> None:
    attackers = [_non_reader(server, 200) for _ in range(20)]  # about 12 MB of answers each
    try:
        time.sleep(0.5)  # let them take every connection slot and fill their buffers
        start = time.monotonic()
        resp = requests.get(server.url + "/healthz", timeout=SEND_TIMEOUT + 10)
        waited = time.monotonic() - start
        assert resp.status_code == 200
        assert waited < SEND_TIMEOUT + 3, f"/healthz waited {waited:.1f}s behind the non-readers"
        time.sleep(SEND_TIMEOUT)
        assert_healthy(server)  # within 100 ms once they are cut off
        for sock in attackers:  # the server closed every one of them: what it had sent is all they get
            assert _closed_by_server(sock, 5), "a non-reading connection was kept open"
    finally:
        for sock in attackers:
            sock.close()
    assert "accepted no byte of the response" in server.log()
    assert "Traceback" not in server.log()
    assert_healthy(server)


def test_an_unread_result_stream_is_cut_off_and_frees_its_stream_slot(server: Server) -> None:
    big = {"task": "hostile_text", "args": {"text": "x", "repeat": 500_000}}
    pile = _pile(server, jobs=[big] * 16)  # 8 MB of results
    requests.get(f"{server.url}/v1/piles/{pile}?wait=10", timeout=15)
    deadline = time.monotonic() + 20
    while requests.get(f"{server.url}/v1/piles/{pile}", timeout=5).json()["pending"]:
        assert time.monotonic() < deadline, "the pile's jobs did not finish"
        time.sleep(0.1)
    streams = []
    for _ in range(2):  # GREENPOOL_MAX_STREAMS_PER_CLIENT=2, never read
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        sock.sendall(f"GET /v1/piles/{pile}/results HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        streams.append(sock)
    try:
        time.sleep(0.5)
        assert requests.get(f"{server.url}/v1/piles/{pile}/results", timeout=5).status_code == 429
        deadline = time.monotonic() + SEND_TIMEOUT + 5
        while True:  # the server gives up on them after the send timeout, freeing their stream slots
            resp = requests.get(f"{server.url}/v1/piles/{pile}/results", timeout=10, stream=True)
            resp.close()
            if resp.status_code == 200:
                break
            assert time.monotonic() < deadline, "the unread streams kept their slots"
            time.sleep(0.2)
        for sock in streams:
            assert _closed_by_server(sock, 5)
    finally:
        for sock in streams:
            sock.close()
    assert_healthy(server)


# -- the http task ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.0.0.2:0/", "http://127.0.0.2:00/x", "https://127.0.0.2:0"])
def test_http_task_url_with_port_0_is_422_naming_url(server: Server, url: str) -> None:
    resp = requests.post(server.url + "/v1/jobs", json={"task": "http", "args": {"url": url}}, timeout=10)
    assert resp.status_code == 422, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in resp.json()["errors"]] == ["args.url"], resp.text
    assert "port" in resp.json()["errors"][0]["message"]
    assert_healthy(server)

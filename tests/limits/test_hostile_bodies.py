"""Hostile request bodies against a real server (issue #11, points 1-3).

Malformed chunked bodies (bad sizes, a NUL in an extension, bare LFs, more data than announced, a request
line where the trailer belongs, EOF mid-body) answer 400 problem+json and close the connection, on every
route that reads a body, through gunicorn's parser (chunked) and the worker's fast path (Content-Length);
JSON nested beyond MAX_JSON_DEPTH answers 400; a lone surrogate is refused with 422 naming the field, and a
task's result holding one is served escaped, so no listing is ever poisoned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from hostile import assert_healthy, exchange, problem_of, split_response
from serverkit import Server, start_server

from service.api.resources.body import MAX_JSON_DEPTH

pytestmark = pytest.mark.timeout(120)

JOB = b'{"task":"echo","args":{"x":1}}'
#: name -> the chunked body after the head (each is malformed)
CHUNKED = {
    "size zz": b"zz\r\n" + JOB + b"\r\n0\r\n\r\n",
    "size -2": b"-2\r\nab\r\n0\r\n\r\n",
    "size 0x2": b"0x2\r\nab\r\n0\r\n\r\n",
    "size +2": b"+2\r\nab\r\n0\r\n\r\n",
    "size '2 '": b"2 \r\nab\r\n0\r\n\r\n",
    "NUL in extension": b"%x;a=\x00b\r\n%b\r\n0\r\n\r\n" % (len(JOB), JOB),
    "bare LF": b"%x\n%b\n0\n\n" % (len(JOB), JOB),
    "bare LF after the size": b"%x\n%b\r\n0\r\n\r\n" % (len(JOB), JOB),
    "more data than the size": b"2\r\n" + JOB + b"\r\n0\r\n\r\n",
    "request line as trailer": b"%x\r\n%b\r\n0\r\nGET /healthz HTTP/1.1\r\n\r\n" % (len(JOB), JOB),
}
EOF_CHUNKED = {  # sent, then the client shuts down writing
    "EOF in a chunk": b"%x\r\n%b" % (len(JOB) + 10, JOB),
    "EOF before the last chunk": b"%x\r\n%b\r\n" % (len(JOB), JOB),
    "EOF in the trailer": b"%x\r\n%b\r\n0\r\n" % (len(JOB), JOB),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"GREENPOOL_PLUGINS": "tests.limits.hostile_tasks"}
    srv = start_server(tmp_path_factory.mktemp("hostile-bodies"), env=env, args=("--keep-alive", "10"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def routes(server: Server) -> list[tuple[str, str]]:
    """(method, path) of every route that reads a JSON body."""
    pile = requests.post(server.url + "/v1/piles", json={"jobs": [], "open": True}, timeout=5).json()["id"]
    return [("POST", "/v1/jobs"), ("POST", "/v1/piles"), ("POST", f"/v1/piles/{pile}/jobs"), ("POST", "/v1/map"),
            ("PATCH", "/v1/pool")]  # fmt: skip


def _head(method: str, path: str, framing: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()


def _submitted(server: Server) -> int:
    return requests.get(server.url + "/v1/pool", timeout=5).json()["submitted"]


@pytest.mark.parametrize("case", [*CHUNKED, *EOF_CHUNKED])
def test_malformed_chunked_body_is_400_and_closes_the_connection(server: Server, routes: list, case: str) -> None:
    before = _submitted(server)
    for method, path in routes:
        body = CHUNKED.get(case, EOF_CHUNKED.get(case))
        # then a request that must not be served: the connection closes after the 400
        tail = b"" if case in EOF_CHUNKED else b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        raw = exchange(server, _head(method, path, "Transfer-Encoding: chunked") + body + tail,
                       half_close=case in EOF_CHUNKED)  # fmt: skip
        document = problem_of(raw, 400)
        assert "body could not be read" in document["detail"], (method, path, document)
        assert split_response(raw)[1]["connection"] == "close", raw
    assert _submitted(server) == before
    assert_healthy(server)


@pytest.mark.parametrize("via", ["fast path", "gunicorn"])
def test_content_length_body_cut_off_by_eof_is_400(server: Server, routes: list, via: str) -> None:
    before = _submitted(server)
    extra = "\r\nX_Via: gunicorn" if via == "gunicorn" else ""  # an `_` in a name: gunicorn serves it
    whole = b'{"task":"echo"}'  # valid JSON on its own: what arrived must not be taken for the body
    for method, path in routes:
        raw = exchange(server, _head(method, path, f"Content-Length: {len(whole) + 20}{extra}") + whole,
                       half_close=True)  # fmt: skip
        document = problem_of(raw, 400)
        assert "20 byte(s) before the end of the body" in document["detail"], (via, method, path, document)
    assert _submitted(server) == before
    assert_healthy(server)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deeply_nested_json_is_400(server: Server, routes: list, depth: int) -> None:
    before = _submitted(server)
    nested = "[" * depth + "]" * depth
    for body in ("[" * depth, nested, '{"task":"echo","args":{"x":' + nested + "}}",
                 '{"jobs":[{"task":"echo","args":{"x":' + nested + "}}]}"):  # fmt: skip
        for method, path in routes:
            resp = requests.request(method, server.url + path, data=body, timeout=10,
                                    headers={"Content-Type": "application/json"})  # fmt: skip
            assert resp.status_code == 400, (method, path, depth, resp.text[:300])
            assert resp.headers["Content-Type"] == "application/problem+json"
            if body.endswith("]") or body.endswith("}") or depth > 1000:  # not merely cut short
                assert resp.json()["limit"] == MAX_JSON_DEPTH, resp.text
                assert f"more than {MAX_JSON_DEPTH} levels" in resp.json()["detail"]
    assert _submitted(server) == before
    assert_healthy(server)


def test_nesting_up_to_the_limit_is_accepted(server: Server) -> None:
    depth = MAX_JSON_DEPTH - 2  # the body and args objects are two levels
    args = {"x": json.loads("[" * depth + "]" * depth)}
    resp = requests.post(server.url + "/v1/jobs?wait=5", json={"task": "echo", "args": args}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == args
    assert_healthy(server)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (rb'{"task":"echo","args":{"x":"\ud800"}}', "args.x"),
        (rb'{"task":"echo","args":{"x":["ok","a\udfffb"]}}', "args.x[1]"),
        (b'{"task":"echo","args":{"x":"\xed\xa0\x80"}}', "args.x"),  # the surrogate UTF-8-encoded
        (rb'{"task":"echo","args":{"x":1},"\ud800":1}', "\\ud800"),  # in an unknown field's name
        (rb'{"task":"echo","args":{"k\udc00":1}}', "args.k\\udc00"),
        (rb'{"jobs":[{"task":"echo"},{"task":"echo","args":{"x":"\ud800"}}]}', "jobs[1].args.x"),
    ],
)
def test_lone_surrogate_is_422_naming_the_field(server: Server, routes: list, body: bytes, field: str) -> None:
    before = _submitted(server)
    for method, path in routes:
        resp = requests.request(method, server.url + path, data=body, timeout=10,
                                headers={"Content-Type": "application/json"})  # fmt: skip
        assert resp.status_code == 422, (method, path, resp.text)
        assert resp.headers["Content-Type"] == "application/problem+json"
        document = resp.json()
        assert document["errors"][0]["field"] == field, document
        assert "surrogate" in document["errors"][0]["message"], document
    assert _submitted(server) == before
    listing = requests.get(server.url + "/v1/jobs", timeout=5)
    assert listing.status_code == 200, listing.text
    assert_healthy(server)


def test_valid_surrogate_pairs_are_accepted(server: Server) -> None:
    resp = requests.post(server.url + "/v1/jobs?wait=5", data=rb'{"task":"echo","args":{"x":"\ud83d\ude00"}}',
                         headers={"Content-Type": "application/json"}, timeout=10)  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == {"x": "\U0001f600"}
    assert_healthy(server)


def test_a_result_holding_a_lone_surrogate_is_served_escaped(server: Server) -> None:
    resp = requests.post(server.url + "/v1/jobs?wait=5", json={"task": "hostile_surrogate"}, timeout=10)
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "succeeded", job
    assert job["result"] == {"lone": "\ud800", "\udfff": "key"}  # the escapes, read back
    assert b"\\ud800" in resp.content
    resp.content.decode("utf-8")  # valid UTF-8 on the wire
    for path in (f"/v1/jobs/{job['id']}", "/v1/jobs", "/v1/jobs?status=succeeded"):
        again = requests.get(server.url + path, timeout=5)
        assert again.status_code == 200, (path, again.text)
    pile = requests.post(server.url + "/v1/piles", json={"jobs": [{"task": "hostile_surrogate"}]}, timeout=5)
    results = requests.get(server.url + pile.headers["Location"] + "/results", timeout=10)
    assert results.status_code == 200
    assert json.loads(results.text.splitlines()[0])["result"] == {"lone": "\ud800", "\udfff": "key"}
    sse = requests.get(server.url + pile.headers["Location"] + "/results",
                       headers={"Accept": "text/event-stream"}, timeout=10)  # fmt: skip
    assert sse.status_code == 200 and "\\ud800" in sse.text
    assert "Traceback" not in server.log()
    assert_healthy(server)

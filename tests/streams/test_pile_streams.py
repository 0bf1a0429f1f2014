"""Piles and their result streams, against a real server: order, completeness, resume, many readers."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

JSON = {"Content-Type": "application/json"}


def create_pile(url: str, body: dict) -> dict:
    resp = requests.post(url + "/v1/piles", json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"] == f"/v1/piles/{resp.json()['id']}"
    return resp.json()


def ndjson_records(resp: requests.Response) -> list[dict]:
    return [json.loads(line) for line in resp.iter_lines() if line]


def stream(url: str, pile_id: str, **params: str) -> list[dict]:
    with requests.get(f"{url}/v1/piles/{pile_id}/results", params=params, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        return ndjson_records(resp)


def sse_events(lines) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each SSE event in `lines` (an iterator of decoded lines)."""
    events, fields = [], {}
    for line in lines:
        if line == "":
            if "event" in fields or "data" in fields:
                events.append((fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


@pytest.mark.timeout(30)
def test_results_arrive_in_completion_order_fastest_first(url):
    pile = create_pile(url, {"task": "sleep", "items": [{"seconds": 0.6}, {"seconds": 0.1}, {"seconds": 0.3}]})
    records = stream(url, pile["id"])
    assert [r["index"] for r in records] == [1, 2, 0]
    assert all(r["status"] == "succeeded" for r in records)
    assert [r["result"]["slept"] for r in records] == [0.1, 0.3, 0.6]


@pytest.mark.timeout(30)
def test_order_submitted_streams_in_pile_order_like_imap(url):
    pile = create_pile(url, {"task": "sleep", "items": [{"seconds": 0.4}, {"seconds": 0.1}, {"seconds": 0.2}]})
    assert [r["index"] for r in stream(url, pile["id"], order="submitted")] == [0, 1, 2]


@pytest.mark.timeout(30)
def test_a_record_carries_the_job_id_and_the_job_is_an_ordinary_job(url):
    pile = create_pile(url, {"jobs": [{"task": "echo", "args": {"n": 7}}]})
    (record,) = stream(url, pile["id"])
    job = requests.get(f"{url}/v1/jobs/{record['job_id']}", timeout=5).json()
    assert record == {"index": 0, "job_id": record["job_id"], "status": "succeeded", "result": {"n": 7}, "error": None,
                      "started_at": job["started_at"], "finished_at": job["finished_at"]}  # fmt: skip
    assert job["started_at"] <= job["finished_at"]
    assert job["pile"] == pile["id"] and job["result"] == {"n": 7}


@pytest.mark.timeout(30)
def test_a_failed_job_streams_its_error(url):
    pile = create_pile(url, {"jobs": [{"task": "sleep", "args": {"seconds": 5}, "timeout": 0.1}]})
    (record,) = stream(url, pile["id"])
    assert record["status"] == "timed_out"
    assert record["error"]["type"] == "Timeout"


@pytest.mark.timeout(90)
def test_a_10000_job_pile_streams_every_index_exactly_once(url):
    pile = create_pile(url, {"task": "echo", "items": [{"i": i} for i in range(10_000)]})
    records = stream(url, pile["id"])
    assert sorted(r["index"] for r in records) == list(range(10_000))
    assert all(r["result"] == {"i": r["index"]} for r in records)
    summary = requests.get(f"{url}/v1/piles/{pile['id']}", timeout=5).json()
    assert summary["size"] == summary["done"] == summary["succeeded"] == 10_000
    assert summary["pending"] == 0 and summary["closed"] is True


@pytest.mark.timeout(60)
def test_an_sse_stream_cut_midway_resumes_with_last_event_id_without_gap_or_duplicate(url):
    items = [{"seconds": round(0.02 * (i % 25), 2)} for i in range(100)]
    pile = create_pile(url, {"task": "sleep", "items": items})
    results_url = f"{url}/v1/piles/{pile['id']}/results"
    headers = {"Accept": "text/event-stream"}
    first = []
    with requests.get(results_url, headers=headers, stream=True, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        lines = resp.iter_lines(decode_unicode=True)
        while len(first) < 30:  # read part of the stream, then drop the connection
            first += sse_events(_until_blank(lines))
    last_id = first[-1][0]
    with requests.get(results_url, headers={**headers, "Last-Event-ID": last_id}, stream=True, timeout=30) as resp:
        rest = sse_events(resp.iter_lines(decode_unicode=True))
    assert rest[-1][1] == "end"
    events = [e for e in first + rest if e[1] == "result"]
    assert [int(e[0]) for e in events] == list(range(100))
    assert sorted(e[2]["index"] for e in events) == list(range(100))


def _until_blank(lines):
    for line in lines:
        yield line
        if line == "":
            return


@pytest.mark.timeout(30)
def test_after_query_parameter_resumes_an_ndjson_stream(url):
    pile = create_pile(url, {"task": "echo", "items": [{"i": i} for i in range(10)]})
    everything = stream(url, pile["id"])
    assert stream(url, pile["id"], after="6") == everything[7:]


@pytest.mark.timeout(30)
def test_two_concurrent_readers_see_the_same_results(url):
    pile = create_pile(url, {"task": "sleep", "items": [{"seconds": 0.05 * (i % 7)} for i in range(40)]})
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(lambda _: stream(url, pile["id"]), range(2))
    assert a == b and len(a) == 40


@pytest.mark.timeout(120)
def test_500_concurrent_readers_on_one_worker_all_get_every_result(url):
    pile = create_pile(url, {"task": "sleep", "items": [{"seconds": 1.0}] * 20})
    with ThreadPoolExecutor(500) as ex:
        counts = list(ex.map(lambda _: len(stream(url, pile["id"])), range(500)))
    assert counts == [20] * 500


@pytest.mark.timeout(30)
def test_an_open_pile_streams_jobs_added_later_and_ends_when_closed(url):
    pile = create_pile(url, {"jobs": [], "open": True})
    with ThreadPoolExecutor(1) as ex:
        reader = ex.submit(stream, url, pile["id"])
        added = requests.post(f"{url}/v1/piles/{pile['id']}/jobs", json={"task": "echo", "items": [{"a": 1}, {"a": 2}]},
                              timeout=5)  # fmt: skip
        assert added.status_code == 202
        assert [a["index"] for a in added.json()["added"]] == [0, 1]
        closed = requests.post(f"{url}/v1/piles/{pile['id']}/close", timeout=5)
        assert closed.status_code == 200 and closed.json()["closed"] is True
        records = reader.result(timeout=20)
    assert sorted(r["result"]["a"] for r in records) == [1, 2]


@pytest.mark.timeout(30)
def test_adding_to_a_closed_pile_is_a_conflict(url):
    pile = create_pile(url, {"task": "echo", "items": [{}]})
    resp = requests.post(f"{url}/v1/piles/{pile['id']}/jobs", json={"task": "echo", "items": [{}]}, timeout=5)
    assert resp.status_code == 409
    assert resp.headers["Content-Type"] == "application/problem+json"


@pytest.mark.timeout(30)
def test_an_idle_stream_sends_heartbeats(url):
    pile = create_pile(url, {"jobs": [], "open": True})
    with requests.get(f"{url}/v1/piles/{pile['id']}/results", stream=True, timeout=10) as resp:
        assert next(resp.iter_lines()) == b""  # a blank NDJSON line after the idle interval
    with requests.get(f"{url}/v1/piles/{pile['id']}/results", headers={"Accept": "text/event-stream"},
                      stream=True, timeout=10) as resp:  # fmt: skip
        assert next(resp.iter_lines()) == b": keepalive"
    requests.post(f"{url}/v1/piles/{pile['id']}/close", timeout=5)


@pytest.mark.timeout(30)
def test_a_disconnecting_reader_is_released_and_the_jobs_keep_running(url):
    pile = create_pile(url, {"task": "sleep", "items": [{"seconds": 0.5}] * 3, "open": True})  # open: never complete
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5)
        s.sendall(f"GET /v1/piles/{pile['id']}/results HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        socks.append(s)
    assert requests.get(f"{url}/v1/piles/{pile['id']}", timeout=5).json()["readers"] == 5
    for s in socks:
        s.close()
    deadline = time.monotonic() + 10
    while requests.get(f"{url}/v1/piles/{pile['id']}", timeout=5).json()["readers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests.get(f"{url}/v1/piles/{pile['id']}", timeout=5).json()["readers"] == 0
    requests.post(f"{url}/v1/piles/{pile['id']}/close", timeout=5)
    assert sorted(r["index"] for r in stream(url, pile["id"])) == [0, 1, 2]


@pytest.mark.timeout(30)
def test_map_equals_the_builtin_map_for_its_items(url):
    items = [{"x": i, "tag": "t" * (i % 5)} for i in range(300)]
    with requests.post(url + "/v1/map", json={"task": "echo", "items": items}, stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        records = ndjson_records(resp)
    assert [r["result"] for r in records] == list(map(lambda item: item, items))
    assert [r["index"] for r in records] == list(range(300))


@pytest.mark.timeout(30)
def test_map_in_completion_order_returns_every_item(url):
    body = {"task": "sleep", "items": [{"seconds": 0.3}, {"seconds": 0.0}], "order": "completion"}
    with requests.post(url + "/v1/map", json=body, stream=True, timeout=30) as resp:
        assert [r["index"] for r in ndjson_records(resp)] == [1, 0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "body, field",
    [
        ({"task": "echo"}, "jobs"),
        ({"jobs": [{"task": "echo"}], "items": []}, "jobs"),
        ({"task": "sleep", "items": [{"seconds": 1}, {"seconds": "x"}]}, "items[1].args.seconds"),
        ({"jobs": [{"task": "nope", "args": {}}]}, "jobs[0].task"),
        ({"task": "echo", "items": [], "open": "yes"}, "open"),
        ({"task": "echo", "items": {}}, "items"),
    ],
)
def test_an_invalid_pile_is_a_422_naming_the_field_and_creates_nothing(url, body, field):
    before = requests.get(url + "/v1/pool", timeout=5).json()["submitted"]
    resp = requests.post(url + "/v1/piles", json=body, timeout=5)
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in resp.json()["errors"]]
    assert requests.get(url + "/v1/pool", timeout=5).json()["submitted"] == before


@pytest.mark.timeout(30)
def test_unknown_piles_are_404_and_bad_stream_parameters_are_400(url):
    assert requests.get(url + "/v1/piles/nope", timeout=5).status_code == 404
    assert requests.get(url + "/v1/piles/nope/results", timeout=5).status_code == 404
    pile = create_pile(url, {"task": "echo", "items": [{}]})
    results = f"{url}/v1/piles/{pile['id']}/results"
    assert requests.get(results, params={"order": "random"}, timeout=5).status_code == 400
    assert requests.get(results, headers={"Last-Event-ID": "x"}, timeout=5).status_code == 400
    assert requests.get(results, params={"after": "-5"}, timeout=5).status_code == 400


@pytest.mark.timeout(60)
def test_a_reader_that_disconnects_while_the_stream_is_idle_is_released_at_once(tmp_path):
    """With a 30 s heartbeat nothing is written for a long time: the server must notice the EOF itself."""
    from serverkit import start_server

    server = start_server(tmp_path, env={"GREENPOOL_STREAM_HEARTBEAT": "30"})
    try:
        pile = create_pile(server.url, {"jobs": [], "open": True})
        summary_url = f"{server.url}/v1/piles/{pile['id']}"
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(f"GET /v1/piles/{pile['id']}/results HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while requests.get(summary_url, timeout=5).json()["readers"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests.get(summary_url, timeout=5).json()["readers"] == 1
        s.close()
        deadline = time.monotonic() + 3
        while requests.get(summary_url, timeout=5).json()["readers"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests.get(summary_url, timeout=5).json()["readers"] == 0
    finally:
        server.stop()

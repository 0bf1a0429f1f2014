"""service.client end to end against a real server: every method, typed errors, pile streams, resumption."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import requests
from conftest import CuttingProxy, Server

from service.client import (
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    GreenpoolError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    Pile,
    QueueFull,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from service.client import client as client_module
from service.client.client import error_for

pytestmark = pytest.mark.timeout(30)
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


# -- simple endpoints -------------------------------------------------------------------------------
def test_health_tasks_stats(client: Client) -> None:
    assert client.health()["status"] == "ok"
    assert client.ready() == {"status": "ready"}
    names = {t["name"] for t in client.tasks()}
    assert {"echo", "sleep", "http", "client_value"} <= names
    stats = client.stats()
    assert stats["size"] == 8
    assert {"running", "free", "waiting", "queued", "submitted", "succeeded", "uptime_s"} <= set(stats)


def test_submit_get_wait(client: Client) -> None:
    job = client.submit("echo", {"hello": "world"})
    assert job["task"] == "echo" and job["args"] == {"hello": "world"}
    done = client.wait(job["id"], 5)
    assert done["status"] == "succeeded" and done["result"] == {"hello": "world"}
    assert client.get(job["id"]) == done
    assert client.get(job["id"], wait=1)["status"] == "succeeded"
    waited = client.submit("client_value", {"value": 7}, wait=5)
    assert waited["status"] == "succeeded" and waited["result"] == 7


def test_waits_longer_than_one_long_poll_are_sliced(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_WAIT", 0.3)  # as if the server's longest ?wait= were 0.3 s
    job = client.submit("sleep", {"seconds": 1.0}, wait=10)  # one 0.3 s POST, then 0.3 s GET slices
    assert job["status"] == "succeeded"
    job = client.submit("sleep", {"seconds": 1.0})
    assert client.wait(job["id"], 10)["status"] == "succeeded"


def test_submit_timeout_and_failure(client: Client) -> None:
    timed = client.submit("sleep", {"seconds": 5}, timeout=0.1, wait=5)
    assert timed["status"] == "timed_out" and timed["timeout"] == 0.1
    failed = client.submit("client_value", {"value": 1, "fail": True}, wait=5)
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"


def test_wait_returns_the_job_when_time_runs_out_then_cancel(client: Client) -> None:
    job = client.submit("sleep", {"seconds": 20})
    seen = client.wait(job["id"], 0.3)
    assert seen["status"] in ("queued", "running")
    cancelled = client.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    with pytest.raises(Conflict) as info:
        client.cancel(job["id"])
    assert info.value.status == 409 and info.value.problem["status"] == 409


def test_jobs_iterates_every_page(client: Client) -> None:
    marker = uuid.uuid4().hex
    ids = [client.submit("echo", {"marker": marker, "i": i}, wait=5)["id"] for i in range(7)]
    listed = list(client.jobs(limit=2))
    listed_ids = [j["id"] for j in listed]
    assert len(listed_ids) == len(set(listed_ids)), "a job listed twice across pages"
    assert [i for i in listed_ids if i in ids] == ids[::-1]  # newest first
    assert all(j["status"] == "succeeded" for j in client.jobs(status="succeeded", limit=3))
    assert not any(j["id"] in ids for j in client.jobs(status="failed"))


# -- typed errors -----------------------------------------------------------------------------------
def test_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        client.get("no-such-job")
    assert info.value.status == 404
    assert info.value.problem["title"] == "Job Not Found" and "no-such-job" in info.value.detail
    with pytest.raises(NotFound):
        client.cancel("no-such-job")
    with pytest.raises(NotFound):
        client.get_pile("no-such-pile")
    with pytest.raises(NotFound):
        list(Pile(client, "no-such-pile"))


def test_validation_error_names_the_field(client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        client.submit("sleep", {"seconds": "soon"})
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors] == ["args.seconds"]
    with pytest.raises(ValidationError) as info:
        client.submit("no_such_task")
    assert info.value.errors[0]["field"] == "task"
    with pytest.raises(ValidationError) as info:
        client.pile("sleep", items=[{"seconds": 0}, {"seconds": -1}])
    assert info.value.errors[0]["field"].startswith("items[1]")
    with pytest.raises(ValidationError) as info:
        client.resize(-1)
    assert info.value.errors[0]["field"] == "size"


def test_bad_request(client: Client) -> None:
    job = client.submit("echo", {})
    with pytest.raises(BadRequest) as info:
        client.get(job["id"], wait=1000)  # beyond the server's max_wait
    assert info.value.status == 400 and "wait" in info.value.detail


class _BusyOnce(http.server.BaseHTTPRequestHandler):
    """Answers the first POST with a 429 (Retry-After: 1) and every later one with a 202: a queue that frees up.
    A stand-in server, because a real one's Retry-After follows its drain rate and is 60 s when nothing ran."""

    posts: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.posts.append(time.monotonic())
        busy = len(self.posts) == 1
        body = json.dumps({"type": "about:blank", "title": "Queue Full", "status": 429, "detail": "full",
                           "retry_after": 1} if busy else {"id": "j1", "status": "queued"}).encode()  # fmt: skip
        self.send_response(429 if busy else 202)
        self.send_header("Content-Type", "application/problem+json" if busy else "application/json")
        self.send_header("Content-Length", str(len(body)))
        if busy:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_a_429_is_retried_after_its_retry_after() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BusyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Client(f"http://127.0.0.1:{server.server_port}", busy_retries=2) as c:
            assert c.submit("echo", {})["status"] == "queued"
        first, second = _BusyOnce.posts
        assert second - first >= 0.9, _BusyOnce.posts  # it waited Retry-After (1 s) before sending again
        _BusyOnce.posts.clear()
        with Client(f"http://127.0.0.1:{server.server_port}", busy_retries=0) as c, pytest.raises(QueueFull):
            c.submit("echo", {})
    finally:
        server.shutdown()
        server.server_close()


def test_queue_full_carries_retry_after(tight_server: Server) -> None:
    with Client(tight_server.url, busy_retries=0) as c:
        queued = [c.submit("echo", {"i": i}) for i in range(2)]
        try:
            with pytest.raises(QueueFull) as info:
                c.submit("echo", {"i": 2})
            assert info.value.status == 429
            assert isinstance(info.value.retry_after, int) and 1 <= info.value.retry_after <= 60
            with pytest.raises(QueueFull):
                c.pile("echo", items=[{}])
        finally:
            for job in queued:
                c.cancel(job["id"])
        assert c.stats()["queued"] == 0


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict),
     (413, PayloadTooLarge), (422, ValidationError), (429, QueueFull), (503, Unavailable), (500, GreenpoolError)],
)  # fmt: skip
def test_error_mapping(status: int, kind: type[GreenpoolError]) -> None:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = "Reason"
    resp.headers["Retry-After"] = "7"
    resp._content = json.dumps({"type": "x", "title": "T", "status": status, "detail": "D"}).encode()
    exc = error_for(resp)
    assert type(exc) is kind and exc.status == status and exc.detail == "D"
    if kind is QueueFull:
        assert exc.retry_after == 7
    resp._content = b"<html>gateway</html>"  # not a problem document: one is synthesised
    exc = error_for(resp)
    assert type(exc) is kind and exc.status == status and "gateway" in exc.detail


# -- piles ------------------------------------------------------------------------------------------
def test_pile_yields_records_in_completion_order(client: Client) -> None:
    seconds = [0.6, 0.45, 0.3, 0.15, 0.0]
    pile = client.pile("sleep", items=[{"seconds": s} for s in seconds])
    assert pile.last_summary["size"] == 5 and pile.last_summary["closed"] is True
    records = list(pile)
    assert [r["index"] for r in records] == [4, 3, 2, 1, 0]
    assert all(r["status"] == "succeeded" for r in records)
    assert [r["result"]["slept"] for r in records] == seconds[::-1]
    assert pile.position == 4
    assert list(pile) == []  # the stream is finished; a second loop repeats nothing
    summary = pile.summary()
    assert summary["done"] == 5 and summary["pending"] == 0 and summary["succeeded"] == 5


def test_pile_submitted_order_and_jobs_shape(client: Client) -> None:
    jobs = [{"task": "sleep", "args": {"seconds": 0.2}}, {"task": "echo", "args": {"n": 1}},
            {"task": "client_value", "args": {"value": 3, "fail": True}}]  # fmt: skip
    pile = client.pile(jobs=jobs, order="submitted")
    records = list(pile)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert [r["status"] for r in records] == ["succeeded", "succeeded", "failed"]
    assert records[2]["error"]["type"] == "ValueError"
    again = list(client.get_pile(pile.id).results(order="completion", after=0))  # resume by position
    assert len(again) == 2


def test_open_pile_add_close(client: Client) -> None:
    pile = client.pile("echo", items=[{"n": 0}], open=True)
    added = pile.add("echo", items=[{"n": 1}, {"n": 2}])
    assert [a["index"] for a in added["added"]] == [1, 2]
    added = pile.add(jobs=[{"task": "client_value", "args": {"value": 3}}])
    assert added["added"][0]["index"] == 3
    assert pile.close()["closed"] is True
    by_index = {r["index"]: r["result"] for r in pile}
    assert by_index == {0: {"n": 0}, 1: {"n": 1}, 2: {"n": 2}, 3: 3}
    with pytest.raises(Conflict):
        pile.add("echo", items=[{}])
    with pytest.raises(TypeError):
        client.pile("echo", items=[{}], jobs=[])


def test_open_pile_streams_while_jobs_are_added(client: Client) -> None:
    pile = client.pile("sleep", items=[{"seconds": 0.05}], open=True)
    stream = iter(pile)
    assert next(stream)["index"] == 0  # the stream is open and waiting for more
    pile.add("client_value", items=[{"value": "late"}])
    assert next(stream)["result"] == "late"
    pile.close()
    assert list(stream) == []


# -- map --------------------------------------------------------------------------------------------
def test_map_equals_builtin_map(client: Client) -> None:
    items = [{"i": i, "s": "x" * (i % 7)} for i in range(60)]
    assert list(client.map("echo", items)) == list(map(lambda item: item, items))
    values = [{"value": v} for v in range(20)]
    assert list(client.map("client_value", values)) == list(map(lambda item: item["value"], values))
    unordered = list(client.map("client_value", values, order="completion"))
    assert sorted(unordered) == list(range(20))


def test_map_raises_job_failed_for_a_failed_item(client: Client) -> None:
    items = [{"value": 0}, {"value": 1, "fail": True}, {"value": 2}]
    results = client.map("client_value", items)
    assert next(results) == 0
    with pytest.raises(JobFailed) as info:
        next(results)
    assert info.value.record["index"] == 1 and info.value.record["status"] == "failed"
    assert "bad 1" in info.value.detail
    records = list(client.map_records("client_value", items))
    assert [r["status"] for r in records] == ["succeeded", "failed", "succeeded"]
    with pytest.raises(ValidationError):
        list(client.map("client_value", [{"value": 1, "oops": 2}]))


# -- transparent resumption ---------------------------------------------------------------------------
def test_pile_resumes_after_a_dropped_connection(proxy_factory: Callable[..., CuttingProxy]) -> None:
    proxy = proxy_factory(cut_after=3000)
    items = [{"seconds": round(0.005 * (i % 40), 3)} for i in range(80)]
    with Client(proxy.url, backoff=0.01) as c:
        pile = c.pile("sleep", items=items)
        records = list(pile)
    assert proxy.cuts_done == 1
    assert b"after=" in proxy.requests, "the client never reconnected with ?after="
    indexes = [r["index"] for r in records]
    assert sorted(indexes) == list(range(80)), "every index exactly once"
    assert pile.position == 79


def test_map_resumes_after_a_dropped_connection(proxy_factory: Callable[..., CuttingProxy]) -> None:
    proxy = proxy_factory(cut_after=2500)
    # Results arrive over time, so the stream is written in small batches and the cut comes after some whole
    # records (instant jobs all end before the first write: one batch, cut before its first record ends).
    items = [{"seconds": round(0.002 * (i % 10), 3)} for i in range(100)]
    with Client(proxy.url, backoff=0.01) as c:
        assert list(c.map("sleep", items)) == [{"slept": item["seconds"]} for item in items]
    assert proxy.cuts_done == 1 and b"after=" in proxy.requests


def test_resumption_is_bounded(client: Client, proxy_factory: Callable[..., CuttingProxy]) -> None:
    pile_id = client.pile("echo", items=[{"pad": "p" * 100}] * 50).id
    proxy = proxy_factory(cut_after=60, cuts=10**6)  # every answer is cut inside its headers
    with Client(proxy.url, max_retries=2, backoff=0.01) as c, pytest.raises(requests.RequestException):
        list(Pile(c, pile_id))
    assert 3 <= proxy.cuts_done <= 6  # the first try and two retries (a stream and a summary each), then the error


def test_token_is_sent_as_bearer(proxy_factory: Callable[..., CuttingProxy]) -> None:
    proxy = proxy_factory(cut_after=10**9, cuts=0)
    with Client(proxy.url, token="s3cret") as c:
        assert c.health()["status"] == "ok"
    assert b"Authorization: Bearer s3cret" in bytes(proxy.requests)


# -- job options (design §3) -------------------------------------------------------------------------------
def test_submit_pile_and_map_send_the_job_options(client: Client) -> None:
    job = client.submit("echo", {"n": 1}, retries=2, retry_backoff=0.5, delay=60)
    assert (job["retries"], job["retry_backoff"], job["status"]) == (2, 0.5, "queued") and job["not_before"]
    client.cancel(job["id"])
    plain = client.submit("echo", {}, wait=5)
    assert (plain["retries"], plain["attempt"], plain["attempts"], plain["not_before"]) == (0, 1, [], None)
    pile = client.pile("retry_flaky", items=[{"key": "client-pile"}], retries=2, retry_backoff=0.05)
    assert [r["status"] for r in pile] == ["succeeded"]
    opened = client.pile("echo", items=[], open=True)
    added = opened.add("echo", items=[{"n": 2}], delay=60)
    assert client.get(added["added"][0]["job_id"])["not_before"] is not None
    assert list(client.map("retry_flaky", [{"key": "client-map"}], retries=2, retry_backoff=0.05)) == [3]
    with pytest.raises(TypeError, match="options"):
        client.pile(jobs=[{"task": "echo"}], retries=1)

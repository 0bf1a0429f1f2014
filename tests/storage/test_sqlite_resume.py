"""What a client holds across a `kill -9` and a restart on the same SQLite file (design §7): an
`Idempotency-Key` retried after the restart returns the original job, a pile's SSE stream read half-way
before the kill resumes from its `Last-Event-ID` with no gap and no duplicate, and a pool size set with
`PATCH /v1/pool` is still in force (the configured size only seeds a store that has none)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from serverkit import Server, start_server

pytestmark = pytest.mark.timeout(90)
FIRST, LATER = 10, 5  # pile jobs that end before the kill; queued ones added after them
HALF = FIRST // 2  # events read before the kill


def _serve(tmp_path: Path, db: Path) -> Server:
    return start_server(tmp_path, {"GREENPOOL_STORE": f"sqlite:{db}", "GREENPOOL_POOL_SIZE": "2"})


def _events(resp: requests.Response) -> Iterator[tuple[str | None, str, str]]:
    """(id, event, data) of each SSE event of a streamed response (comments skipped)."""
    fields: dict[str, str] = {}
    for line in resp.iter_lines(decode_unicode=True):
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if fields:
            yield fields.get("id"), fields.get("event", "message"), fields.get("data", "")
            fields = {}


def _stream(server: Server, pile_id: str, last: str | None = None) -> requests.Response:
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last is not None else {})}
    return requests.get(f"{server.url}/v1/piles/{pile_id}/results", headers=headers, stream=True, timeout=20)


def _until(server: Server, path: str, ready: Callable[[dict], bool], within: float = 20.0) -> dict:
    deadline = time.monotonic() + within
    while not ready(body := server.get(path).json()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return body


def assert_kept(again: Server, job_id: str, key: dict, pile_id: str, last: str, sleeper: str) -> dict:
    """What a restart after a kill -9 keeps (the scenario of the test below, shared with the Redis store's):
    the pool size set at runtime, the idempotency key of job `job_id` (replayed), and the pile's SSE stream
    resumed after `last` with no gap or duplicate, the `sleeper` ended WorkerLost. Returns the pile's summary."""
    assert again.get("/v1/pool").json()["size"] == 1, "the size set at runtime, not GREENPOOL_POOL_SIZE"
    replay = again.post("/v1/jobs", json={"task": "echo", "args": {"k": 1}}, headers=key)
    assert replay.status_code in (200, 202) and replay.json()["id"] == job_id, replay.text
    assert replay.headers.get("Idempotent-Replayed") == "true", replay.headers
    with _stream(again, pile_id, last=last) as resp:
        after = []
        for event_id, event, data in _events(resp):
            if event == "end":
                break
            after.append((event_id, data))
    total = FIRST + 1 + LATER
    assert [int(i) for i, _ in after] == list(range(HALF, total)), after  # no gap, no duplicate
    summary = again.get(f"/v1/piles/{pile_id}").json()
    assert summary["done"] == total and summary["failed"] == 1, summary  # the sleeper: WorkerLost
    assert any(sleeper in data and "WorkerLost" in data for _, data in after), after
    return summary


def test_keys_streams_and_pool_size_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "gp.db"
    server = _serve(tmp_path, db)
    key = {"Idempotency-Key": "resume-1"}
    try:
        original = server.post("/v1/jobs", json={"task": "echo", "args": {"k": 1}}, headers=key)
        assert original.status_code == 202, original.text
        pile = server.post("/v1/piles", json={"open": True, "jobs": [{"task": "echo", "args": {"n": n}}
                                                                     for n in range(FIRST)]}).json()  # fmt: skip
        assert _until(server, f"/v1/piles/{pile['id']}", lambda s: s["done"] == FIRST)["done"] == FIRST
        assert server.patch("/v1/pool", json={"size": 1}).status_code == 200
        add = [{"task": "sleep", "args": {"seconds": 60}}] + [{"task": "echo", "args": {"m": m}} for m in range(LATER)]
        added = server.post(f"/v1/piles/{pile['id']}/jobs", json={"jobs": add})
        assert added.status_code == 202, added.text
        sleeper = added.json()["added"][0]["job_id"]
        assert _until(server, f"/v1/jobs/{sleeper}", lambda j: j["status"] == "running")["status"] == "running"
        assert server.post(f"/v1/piles/{pile['id']}/close").status_code == 200
        with _stream(server, pile["id"]) as resp:
            before = [event for _, event in zip(range(HALF), _events(resp), strict=False)]
        assert [int(i) for i, _, _ in before] == list(range(HALF)), before
    finally:
        server.kill()  # SIGKILL to master and worker: nothing flushed on the way out
        server.stop()

    again = _serve(tmp_path, db)
    try:
        assert_kept(again, original.json()["id"], key, pile["id"], before[-1][0], sleeper)
    finally:
        again.stop()

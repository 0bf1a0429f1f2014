"""Faults: a task that raises, one that blocks the hub, one that never ends, a client leaving mid-stream,
SIGTERM during a pile stream. After each, every accepted job is in exactly one terminal state (the JSON
log of `greenpool.jobs` has one terminal line per job id) and the server still answers."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest
import requests
from fault_support import assert_one_terminal_state_each
from serverkit import Server

Start = Callable[..., Server]


def submit(server: Server, body: dict, wait: float | None = None) -> dict:
    params = None if wait is None else {"wait": wait}
    resp = requests.post(server.url + "/v1/jobs", json=body, params=params, timeout=10 + (wait or 0))
    assert resp.status_code in (200, 202), resp.text
    return resp.json()


def job(server: Server, job_id: str, wait: float = 0) -> dict:
    resp = requests.get(f"{server.url}/v1/jobs/{job_id}", params={"wait": wait}, timeout=10 + wait)
    assert resp.status_code == 200, resp.text
    return resp.json()


def healthy(server: Server) -> bool:
    return requests.get(server.url + "/healthz", timeout=5).status_code == 200


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(30)
def test_a_task_that_raises_fails_its_job_and_the_server_answers(fault_server: Start) -> None:
    server = fault_server()
    failed = submit(server, {"task": "fault_raise", "args": {"message": "kaput"}}, wait=5)
    assert failed["status"] == "failed" and failed["error"] == {"type": "RuntimeError", "message": "kaput"}
    ok = submit(server, {"task": "echo", "args": {"after": "failure"}}, wait=5)
    assert ok["status"] == "succeeded" and ok["result"] == {"after": "failure"}
    assert healthy(server)
    assert requests.get(server.url + "/v1/pool", timeout=5).json()["failed"] == 1
    # A task failing is the job's outcome, not a server error: its traceback is only in the job's warning line.
    tracebacks = [rec for rec in server.log_records() if "Traceback" in json.dumps(rec)]
    assert [(rec["logger"], rec["level"], rec["job_id"]) for rec in tracebacks] == [
        ("greenpool.tasks", "warning", failed["id"])], tracebacks  # fmt: skip
    assert "Traceback" not in "".join(line for line in server.log().splitlines() if not line.startswith("{"))
    assert_one_terminal_state_each(server, [failed["id"], ok["id"]])


@pytest.mark.timeout(60)
def test_a_task_that_blocks_the_hub_is_logged_and_the_server_recovers(fault_server: Start) -> None:
    server = fault_server(args=("--timeout", "10"))
    before = [submit(server, {"task": "sleep", "args": {"seconds": 0.5}})["id"] for _ in range(5)]
    blocker = submit(server, {"task": "fault_block_hub", "args": {"seconds": 3}})
    time.sleep(0.2)  # the blocker is running: the hub is frozen now
    t0 = time.monotonic()
    assert healthy(server)  # answered once the hub is free again
    stalled = time.monotonic() - t0
    assert stalled > 1.5, f"/healthz answered after {stalled:.2f}s: the hub was not blocked?"
    after = [submit(server, {"task": "echo", "args": {"i": i}})["id"] for i in range(5)]
    for job_id in [*before, blocker["id"], *after]:
        assert job(server, job_id, wait=10)["status"] == "succeeded"
    wait_for(lambda: "hub was blocked" in server.log(), 5, "the heartbeat's warning")
    assert "Worker aborted" not in server.log()  # 3 s is well within --timeout 10: no abort
    assert server.proc.poll() is None and healthy(server)
    assert_one_terminal_state_each(server, [*before, blocker["id"], *after])


@pytest.mark.timeout(30)
def test_a_task_that_never_ends_times_out_and_frees_its_slot(fault_server: Start) -> None:
    server = fault_server(env={"GREENPOOL_POOL_SIZE": "1"})
    forever = submit(server, {"task": "fault_forever", "timeout": 1})
    behind = submit(server, {"task": "echo", "args": {"behind": True}})  # queued: the only slot is taken
    assert job(server, behind["id"])["status"] == "queued"
    ended = job(server, forever["id"], wait=10)
    assert ended["status"] == "timed_out" and ended["error"]["type"] == "Timeout", ended
    assert job(server, behind["id"], wait=10)["status"] == "succeeded"  # the slot was freed
    pool = requests.get(server.url + "/v1/pool", timeout=5).json()
    assert pool["running"] == 0 and pool["free"] == 1 and pool["timed_out"] == 1, pool
    assert_one_terminal_state_each(server, [forever["id"], behind["id"]])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("route", ["results", "map"])
def test_a_client_leaving_mid_stream_leaves_the_pile_to_complete(fault_server: Start, route: str) -> None:
    server = fault_server(env={"GREENPOOL_POOL_SIZE": "4", "GREENPOOL_STREAM_HEARTBEAT": "0.2"})
    items = [{"seconds": 0.05 if i == 0 else 0.5 + 0.05 * i} for i in range(12)]
    if route == "map":
        body = json.dumps({"task": "sleep", "items": items, "order": "completion"}).encode()
        request = (f"POST /v1/map HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    else:
        pile = requests.post(server.url + "/v1/piles", json={"task": "sleep", "items": items}, timeout=10).json()
        request = f"GET /v1/piles/{pile['id']}/results HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(request)
    received = b""
    while b'"index"' not in received:  # the first record
        received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    pile_id = pile["id"] if route == "results" else re.search(r"(?im)^content-location: /v1/piles/(\w+)", head)[1]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = reset
    sock.close()
    assert healthy(server)

    def summary() -> dict:
        return requests.get(f"{server.url}/v1/piles/{pile_id}", timeout=5).json()

    wait_for(lambda: summary()["readers"] == 0, 5, "the server to notice the reader leaving")
    wait_for(lambda: summary()["done"] == 12, 15, "the pile to complete")
    final = summary()
    assert final["succeeded"] == 12 and final["pending"] == 0, final
    ids = [r["job_id"] for r in map(json.loads, requests.get(f"{server.url}/v1/piles/{pile_id}/results",
                                                             timeout=10).text.split())]  # fmt: skip
    assert len(ids) == 12
    assert_one_terminal_state_each(server, ids)
    assert "Error handling request" not in server.log()


@pytest.mark.timeout(60)
def test_sigterm_during_a_pile_stream_ends_the_stream_and_every_job_once(fault_server: Start) -> None:
    grace = 6
    server = fault_server(env={"GREENPOOL_POOL_SIZE": "4", "GREENPOOL_GRACEFUL_TIMEOUT": str(grace),
                               "GREENPOOL_STREAM_HEARTBEAT": "0.2"},
                          args=("--graceful-timeout", str(grace)))  # fmt: skip
    items = [{"seconds": 1.5}] * 12  # 4 run at once; 8 wait in the queue
    pile = requests.post(server.url + "/v1/piles", json={"task": "sleep", "items": items}, timeout=10).json()
    records: list[dict] = []
    ended = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with requests.get(f"{server.url}/v1/piles/{pile['id']}/results", stream=True, timeout=30) as resp:
                assert resp.status_code == 200
                for line in resp.iter_lines():
                    if line:
                        records.append(json.loads(line))
            ended.set()
        except BaseException as exc:  # noqa: BLE001 — reported by the test below
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: requests.get(server.url + "/v1/pool", timeout=5).json()["running"] == 4, 5, "4 running")
    t_term = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    reader.join(grace + 5)
    assert not errors, errors
    assert ended.is_set(), "the stream did not end normally (chunked terminator) during the drain"
    rc = server.proc.wait(grace + 10)
    drain_s = time.monotonic() - t_term
    assert rc == 0, server.log()[-3000:]
    assert drain_s < grace, drain_s  # the running jobs finished; nobody waited for the grace period to end
    statuses = sorted(r["status"] for r in records)
    assert statuses == ["cancelled"] * 8 + ["succeeded"] * 4, statuses  # running ones finished; queued cancelled
    assert sorted(r["index"] for r in records) == list(range(12))
    events = assert_one_terminal_state_each(server, [r["job_id"] for r in records])
    assert sorted(e[-1] for e in events.values()) == statuses

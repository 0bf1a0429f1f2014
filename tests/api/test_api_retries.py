"""Job options against a real server (design §3): retries with backoff, delay, their 422s, a cancel while a
job waits for its retry, a timed-out attempt retried, and a delayed job kept across a restart (SQLite)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from api_support import ServerFactory, assert_problem, error_fields
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(90)
BACKOFF = 0.4  # seconds: retry_backoff of the tests' flaky jobs


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_ended(server, job_id: str, within: float = 20.0) -> dict:  # noqa: ANN001
    """The job once it has ended (long-polling), failing the test if it has not within `within` s."""
    deadline = time.monotonic() + within
    while True:
        job = server.job(job_id, wait=2)
        if job["finished_at"] is not None or time.monotonic() > deadline:
            assert job["finished_at"] is not None, job
            return job


def test_a_job_failing_twice_succeeds_on_its_third_attempt_after_the_backoff(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    body = {"key": "three", "failures": 2}
    job = server.submit("retry_flaky", body, retries=3, retry_backoff=BACKOFF)
    assert (job["attempt"], job["retries"], job["retry_backoff"], job["attempts"]) == (1, 3, BACKOFF, [])
    done = wait_ended(server, job["id"])
    assert (done["status"], done["result"], done["attempt"]) == ("succeeded", 3, 3), done
    first, second = done["attempts"]
    assert first["status"] == second["status"] == "failed"
    assert second["error"] == {"type": "ValueError", "message": "call 2 of 'three' fails"}
    # before attempt n+1: uniform(0.5, 1) × retry_backoff × 2^(n−1); ms timestamps, a generous upper margin
    waits = [ts(second["started_at"]) - ts(first["finished_at"]), ts(done["started_at"]) - ts(second["finished_at"])]
    for n, wait in enumerate(waits, 1):
        longest = BACKOFF * 2 ** (n - 1)
        assert 0.5 * longest - 0.01 <= wait <= longest + 0.5, (n, waits)
    metrics = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    retried = [s.value for s in metrics["greenpool_job_retries"].samples
               if s.name == "greenpool_job_retries_total" and s.labels.get("task") == "retry_flaky"]  # fmt: skip
    assert retried == [2.0]


def test_without_retries_a_failure_is_final_and_a_timed_out_attempt_is_retried(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    once = wait_ended(server, server.submit("retry_flaky", {"key": "once"})["id"])
    assert (once["status"], once["attempt"], once["retries"], once["attempts"]) == ("failed", 1, 0, [])
    slow = server.submit("sleep", {"seconds": 30}, timeout=0.2, retries=1, retry_backoff=0.1)
    ended = wait_ended(server, slow["id"])
    assert (ended["status"], ended["attempt"]) == ("timed_out", 2), ended
    assert [a["status"] for a in ended["attempts"]] == ["timed_out"]
    assert ended["attempts"][0]["error"]["type"] == "Timeout"


def test_delay_holds_a_job_queued_until_not_before_and_pool_counts_it(server_factory: ServerFactory) -> None:
    server = server_factory.start({"GREENPOOL_POOL_SIZE": "1"})
    delayed = server.submit("echo", {"late": 1}, delay=1.5)
    assert delayed["not_before"] is not None
    assert ts(delayed["not_before"]) - ts(delayed["submitted_at"]) == pytest.approx(1.5, abs=0.002)
    behind = server.submit("echo", {"early": 1}, wait=5)
    assert behind["status"] == "succeeded"  # not held up by the delayed job before it
    stats = server.pool()
    assert (stats["delayed"], stats["queued"]) == (1, 1), stats
    assert server.job(delayed["id"])["status"] == "queued"
    done = wait_ended(server, delayed["id"])
    assert done["status"] == "succeeded" and ts(done["started_at"]) >= ts(done["not_before"]) - 0.001, done
    assert server.pool()["delayed"] == 0


def test_a_delayed_pile_and_map_take_the_options_for_every_item(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    pile = server.post("/v1/piles", json={"task": "echo", "items": [{"n": 1}, {"n": 2}], "delay": 60, "retries": 2})
    assert pile.status_code == 201 and pile.json()["pending"] == 2, pile.text
    assert server.pool()["delayed"] == 2
    opened = server.post("/v1/piles", json={"jobs": [], "open": True}).json()
    more = server.post(f"/v1/piles/{opened['id']}/jobs", json={"jobs": [{"task": "echo", "retries": 1, "delay": 60}]})
    assert more.status_code == 202, more.text
    job = server.job(more.json()["added"][0]["job_id"])
    assert (job["retries"], job["status"]) == (1, "queued") and job["not_before"] is not None
    streamed = server.post("/v1/map", json={"task": "retry_flaky", "items": [{"key": "m1"}, {"key": "m2"}],
                                            "retries": 2, "retry_backoff": 0.05}, timeout=30)  # fmt: skip
    assert streamed.status_code == 200, streamed.text
    records = [line for line in streamed.text.splitlines() if line.strip()]
    assert len(records) == 2 and all('"succeeded"' in line for line in records), records  # one record per job


@pytest.mark.parametrize(("extra", "field"), [
    ({"retries": 26}, "retries"), ({"retries": -1}, "retries"), ({"retries": 1.5}, "retries"),
    ({"retries": True}, "retries"), ({"retries": "3"}, "retries"),
    ({"retries": 26.0}, "retries"), ({"retry_backoff": 301}, "retry_backoff"),
    ({"retry_backoff": -0.1}, "retry_backoff"), ({"retry_backoff": "1"}, "retry_backoff"),
    ({"delay": 604801}, "delay"), ({"delay": -1}, "delay"), ({"delay": [1]}, "delay"),
])  # fmt: skip
def test_out_of_range_or_wrongly_typed_options_are_422_naming_the_field(
    module_server_factory: ServerFactory, extra: dict, field: str
) -> None:
    server = module_server_factory.servers[0] if module_server_factory.servers else module_server_factory.start()
    assert field in error_fields(assert_problem(server.post("/v1/jobs", json={"task": "echo", **extra}), 422))
    pile = server.post("/v1/piles", json={"jobs": [{"task": "echo"}, {"task": "echo", **extra}]})
    assert f"jobs[1].{field}" in error_fields(assert_problem(pile, 422))
    mapped = server.post("/v1/map", json={"task": "echo", "items": [{}], **extra})
    assert field in error_fields(assert_problem(mapped, 422))
    assert server.pool()["submitted"] == 0


def test_cancelling_a_job_waiting_for_its_retry_ends_it_cancelled(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    job = server.submit("retry_flaky", {"key": "cancel", "failures": 100}, retries=5, retry_backoff=60)
    deadline = time.monotonic() + 10
    while (seen := server.job(job["id"]))["attempt"] == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (seen["status"], seen["attempt"], len(seen["attempts"])) == ("queued", 2, 1), seen
    assert server.pool()["delayed"] == 1
    cancelled = server.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert server.pool()["delayed"] == 0 and server.pool()["queued"] == 0
    assert server.job(job["id"])["status"] == "cancelled"


def test_a_delayed_job_is_held_across_a_restart_on_the_same_sqlite_file(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    env = {"GREENPOOL_STORE": f"sqlite:{tmp_path / 'gp.db'}"}
    server = server_factory.start(env)
    delayed = server.submit("echo", {"kept": True}, delay=15, retries=2)  # longer than a kill and a restart
    server.kill()  # kill -9: what the 202 acknowledged was committed (a SIGTERM drain is another matter)
    server.stop()
    again = server_factory.start(env)
    job = again.job(delayed["id"])
    assert (job["status"], job["retries"], job["not_before"]) == ("queued", 2, delayed["not_before"]), (job, delayed)
    assert again.pool()["delayed"] == 1
    done = wait_ended(again, delayed["id"], within=30)
    assert done["status"] == "succeeded" and ts(done["started_at"]) >= ts(delayed["not_before"]) - 0.001, done


def test_an_attempt_lost_to_a_kill_9_is_retried_after_a_restart(server_factory: ServerFactory, tmp_path: Path) -> None:
    env = {"GREENPOOL_STORE": f"sqlite:{tmp_path / 'gp.db'}"}
    server = server_factory.start(env)
    job = server.submit("sleep", {"seconds": 1}, retries=1, retry_backoff=0.1)
    deadline = time.monotonic() + 10
    while server.job(job["id"])["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    server.submit("echo", {})  # its 202 waits for a commit that holds the job's `running` row too
    server.kill()
    server.stop()
    again = server_factory.start(env)
    done = wait_ended(again, job["id"])
    assert (done["status"], done["attempt"]) == ("succeeded", 2), done
    assert done["attempts"][0]["status"] == "failed" and done["attempts"][0]["error"]["type"] == "WorkerLost"

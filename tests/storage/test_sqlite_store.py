"""The SQLite store keeps what the ports hold across a close and reopen of its file, and refuses bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.storage import StoreError
from service.storage.records import COMPLETION, QUEUED, RUNNING, SUCCEEDED, Job, Pile
from service.storage.sqlite import SCHEMA_VERSION, SqliteStore
from service.storage.sqlite.schema import APPLICATION_ID, MIGRATIONS

pytestmark = pytest.mark.timeout(30)
T0 = 1_700_000_000.0


def test_records_queue_order_piles_result_positions_keys_and_sizes_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "greenpool.db")
    store = SqliteStore(path, 100)
    pile = Pile("p1", owner="alice")
    store.piles.add(pile)
    queue = store.queue("default")
    jobs = []
    for n in range(4):
        job = Job(f"j{n}", "echo", {"n": n}, None, T0 + n, pile="p1" if n < 2 else None)
        store.jobs.add(job)
        if n < 2:
            store.piles.add_job(pile, job)
        assert queue.reserve(1, 100)
        queue.push(job)
        jobs.append(job)
    assert queue.take(T0 + 10) is jobs[0]
    store.jobs.finish(jobs[0], SUCCEEDED, {"n": 0}, None, T0 + 11)
    store.results.append(pile, jobs[0], T0 + 11)
    assert queue.take(T0 + 12) is jobs[1]  # left running: the engine ends it WorkerLost after the reopen
    store.keys.claim(("alice", "k"), "j2")
    store.sizes.set("default", 7)
    store.flush()
    store.close()

    again = SqliteStore(path, 100)
    try:
        assert [again.jobs.get(f"j{n}").status for n in range(4)] == [SUCCEEDED, RUNNING, QUEUED, QUEUED]
        assert again.jobs.get("j0").result == {"n": 0} and again.jobs.get("j0").finished_at == T0 + 11
        assert [job.id for job in again.jobs.select()] == ["j3", "j2", "j1", "j0"]
        requeued = again.queue("default")
        assert requeued.queued == 2 and requeued.take(T0 + 20).id == "j2" and requeued.take(T0 + 21).id == "j3"
        reloaded = again.piles.get("p1")
        assert reloaded is not None and [job.id for job in reloaded.jobs] == ["j0", "j1"]
        records, end, over = again.results.read(reloaded, -1, COMPLETION)
        assert [job.id for job in records] == ["j0"] and end == 1 and not over
        assert again.keys.claim(("alice", "k"), "other") == "j2"
        assert again.sizes.get("default") == 7
        assert again.recovered["queued"] == 2
    finally:
        again.close()


def test_retry_policy_attempts_and_not_before_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "greenpool.db")
    store = SqliteStore(path, 100)
    queue = store.queue("default")
    retried, delayed = Job("r", "echo", {}, 5.0, T0), Job("d", "echo", {}, None, T0 + 1)
    retried.retries, retried.backoff = 3, 0.5
    delayed.not_before = T0 + 3600
    for job in (retried, delayed):
        store.jobs.add(job)
        assert queue.reserve(1, 100)
        queue.push(job)
    assert queue.take(T0 + 2) is retried
    error = {"type": "Timeout", "message": "too slow"}
    assert store.jobs.retry(retried, "timed_out", error, T0 + 7, T0 + 8)
    store.flush()
    store.close()

    again = SqliteStore(path, 100)
    try:
        job = again.jobs.get("r")
        assert (job.status, job.retries, job.backoff, job.attempt, job.not_before) == (QUEUED, 3, 0.5, 2, T0 + 8)
        assert job.attempts == retried.attempts and job.attempts[0]["error"] == error
        assert again.jobs.get("d").not_before == T0 + 3600
        requeued = again.queue("default")
        assert (requeued.queued, requeued.delayed) == (0, 2)  # both held back until their not_before
        assert requeued.release_due(T0 + 10) == T0 + 3600 and requeued.take(T0 + 10) is job
    finally:
        again.close()


def test_a_version_1_file_is_migrated_with_the_job_options_defaulted(tmp_path: Path) -> None:
    path = tmp_path / "greenpool.db"
    conn = sqlite3.connect(path)  # a file as the first version wrote it
    for statement in MIGRATIONS[0]:
        conn.execute(statement)  # type: ignore[arg-type]
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO jobs (seq, id, task, args, pool, status, result, submitted_at, listed) VALUES"
                 " (1, 'old', 'echo', '{}', 'default', 'queued', 'null', 1.0, 1)")  # fmt: skip
    conn.commit()
    conn.close()
    store = SqliteStore(str(path), 100)
    try:
        old = store.jobs.get("old")
        assert (old.retries, old.backoff, old.attempt, old.attempts, old.not_before) == (0, 1.0, 1, None, None)
        assert store.queue("default").queued == 1
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_corrupt_file_a_foreign_database_and_a_newer_schema_are_refused_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (x)")
    newer = tmp_path / "newer.db"
    SqliteStore(str(newer), 10).close()
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for path, why in ((corrupt, "not a readable SQLite"), (foreign, "not a greenpool store"), (newer, "newer")):
        with pytest.raises(StoreError, match=why) as caught:
            SqliteStore(str(path), 10)
        assert str(path) in str(caught.value)

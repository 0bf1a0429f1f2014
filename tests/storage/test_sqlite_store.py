"""The SQLite store keeps what the ports hold across a close and reopen of its file, and refuses bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.storage import StoreError
from service.storage.records import COMPLETION, QUEUED, RUNNING, SUCCEEDED, Job, Pile
from service.storage.sqlite import SCHEMA_VERSION, SqliteStore

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

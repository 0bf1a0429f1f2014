"""A store file of an older schema version is migrated at open and keeps what it held."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from service.storage.records import QUEUED, Job
from service.storage.sqlite import SCHEMA_VERSION, SqliteStore
from service.storage.sqlite.schema import APPLICATION_ID, MIGRATIONS

pytestmark = pytest.mark.timeout(30)
T0 = 1_700_000_000.0


def _version_1_file(path: Path) -> None:
    """A file as greenpool's first schema wrote it, holding one queued job."""
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO jobs VALUES (1, 'j1', 'echo', ?, NULL, 'default', NULL, NULL, NULL, ?, 'null',"
                     " NULL, ?, NULL, NULL, 1)", (json.dumps({"n": 1}), QUEUED, T0))  # fmt: skip


def test_version_1_drops_the_unique_index_on_job_ids_and_keeps_the_jobs(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _version_1_file(path)
    store = SqliteStore(str(path), 100)
    try:
        assert store.recovered["queued"] == 1 and store.jobs.get("j1").args == {"n": 1}
        store.jobs.add(Job("j2", "echo", {"n": 2}, None, T0 + 1))
        store.flush()
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        unique = [name for _, name, is_unique, *_ in conn.execute("PRAGMA index_list(jobs)") if is_unique]
        assert unique == [], unique
        assert [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY seq")] == ["j1", "j2"]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

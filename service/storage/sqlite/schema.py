"""The store file: opening it (WAL, the sync level), recognising it, and migrating its schema at start.

The schema version is SQLite's `user_version`; `application_id` marks the file as greenpool's, so another
application's database is refused rather than written into. A file that cannot be opened, read, recognised
or migrated raises `StoreError` naming it: `greenpool serve` stops with exit status 2 on it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from ..ports import StoreError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SYNC_LEVELS", "connect"]

APPLICATION_ID = 0x47504F4C  # "GPOL"
SYNC_LEVELS = {"normal": "NORMAL", "full": "FULL"}  # normal: survives a crash of the process; full: of the OS too



def _job_ids_not_indexed(conn: sqlite3.Connection) -> None:
    """Rebuild `jobs` without the UNIQUE index on `id` (keeping whatever columns it has by now): ids are
    random, so that index took a random page per row written, which every commit then wrote whole; ids are
    unique by construction (128 random bits) and the file is only ever read in `seq` order."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
    conn.execute(sql.replace("CREATE TABLE jobs", "CREATE TABLE jobs_v2", 1).replace(" UNIQUE,", ",", 1))
    conn.execute("INSERT INTO jobs_v2 SELECT * FROM jobs")
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
    conn.execute("CREATE INDEX jobs_by_pile ON jobs (pile) WHERE pile IS NOT NULL")


# MIGRATIONS[n] takes a file from version n to n + 1 (SQL statements, or a function of the connection for
# what SQL alone cannot say); a new version appends to this list, never edits it.
MIGRATIONS: list[tuple[str | Callable[[sqlite3.Connection], None], ...]] = [
    (
        # A job row per record kept; `listed` 0: evicted from the records but kept as a member of its pile.
        """CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, task TEXT NOT NULL, args TEXT,
           timeout REAL, pool TEXT NOT NULL, pile TEXT, pile_index INTEGER, owner TEXT, status TEXT NOT NULL,
           result TEXT, error TEXT, submitted_at REAL, started_at REAL, finished_at REAL, listed INTEGER NOT NULL)""",
        "CREATE INDEX jobs_by_pile ON jobs (pile) WHERE pile IS NOT NULL",
        "CREATE TABLE piles (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT, closed INTEGER NOT NULL,"
        " finished_at REAL)",
        # A pile's result log: `position` is the stream position (SSE id) of the job with `seq`.
        "CREATE TABLE results (pile TEXT NOT NULL, position INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (pile, position)) WITHOUT ROWID",
        "CREATE TABLE keys (k BLOB PRIMARY KEY, n INTEGER NOT NULL, value BLOB NOT NULL)",
        "CREATE TABLE sizes (pool TEXT PRIMARY KEY, size INTEGER NOT NULL)",
    ),
    (_job_ids_not_indexed,),
]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str, sync: str = "normal") -> sqlite3.Connection:
    """Open (creating it if absent) and migrate the store file at `path`; StoreError naming it if that fails."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"the store file {path}: its directory cannot be created: {exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise StoreError(f"the store file {path}: its directory {directory} is not writable (WAL needs it)")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"the store file {path} cannot be read and written (check its permissions)")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    except sqlite3.Error as exc:
        raise StoreError(f"the store file {path} cannot be opened: {exc}") from None
    try:
        _prepare(conn, path, sync)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"the store file {path} is not a readable SQLite database: {exc}") from None
    except StoreError:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: str, sync: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if (app_id != APPLICATION_ID and (tables or version)) or (app_id == APPLICATION_ID and not version):
        raise StoreError(f"the store file {path} is not a greenpool store (another application's database?)")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store file {path} has schema version {version}, newer than this greenpool's ({SCHEMA_VERSION}):"
            " run a newer greenpool, or point GREENPOOL_STORE at another file"
        )
    if not tables:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table: retention can give pages back
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StoreError(f"the store file {path} cannot be put in WAL mode")
    conn.execute(f"PRAGMA synchronous = {SYNC_LEVELS[sync]}")
    conn.execute("PRAGMA busy_timeout = 1000")
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    if isinstance(statement, str):
                        conn.execute(statement)
                    else:
                        statement(conn)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]  # reads every page: finds a corrupt file
    if check != "ok":
        raise StoreError(f"the store file {path} is corrupt: {check}")

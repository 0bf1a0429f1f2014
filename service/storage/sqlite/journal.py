"""The journal: every change the store makes, written to the file by ONE writer OS thread, many per commit.

The hub appends changes (plain tuples) to a deque and never waits for the disk; the writer thread owns the
write connection, takes every change queued so far, folds changes to one row into the last one, writes them
in one transaction and commits: a group commit, as large as what arrived while the previous one was on
its way to the disk. `flush()` parks the calling green thread (never the hub) until everything it changed
is committed, woken through a `pool_core.threads.Doorbell`: that is how a 202/201 waits for its commit.
A commit that fails (disk full, a locked file) is retried with the same changes until it succeeds; while
it fails, `error` says why and `flush()` raises StoreError rather than wait. After each commit the writer
measures the pages in use (`used_bytes`: the file's pages minus its free list, which retention's deletes
grow) and gives a large free list back to the file system (incremental vacuum).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent  # the greenlet itself: the hub parks and wakes greenlets, not GreenThreads

from pool_core import spawn_n
from pool_core.threads import Doorbell

from ...encoding import dumps
from ..ports import StoreError

__all__ = ["JOB_FIELDS", "JOB_COLUMNS", "Journal"]

log = logging.getLogger("greenpool.store")
JOB, UNJOB, PILE, UNPILE, RESULT, KEY, UNKEY, SIZE, UNSIZE, UNLIST = range(10)  # change kinds: (kind, key, row)
_TABLE = (0, 0, 1, 1, -1, 2, 2, 3, 3, 0)  # kind → the table whose last change per key wins (jobs, piles, keys, sizes)
_RETRY = (0.01, 1.0)  # seconds between attempts of a failed commit: first, at most
_GATHER_S = 0.002  # a commit starts at most this often (s) unless _GATHER_CHANGES are waiting: fewer, larger
_GATHER_CHANGES = 512
_DOOMED_S = 0.1  # an evicted job's row is deleted at most this long after its eviction (or at an idle moment)
_MEASURE_S = 0.05  # the pages in use are measured at most this often (after a commit)
_VACUUM_PAGES = 256  # free pages beyond which (and beyond a quarter of the file) they go back to the OS

#: The `Job` attributes a JOB change carries, in this order (the row's columns but `listed`, which the kind says).
JOB_FIELDS = (
    "seq", "id", "task", "args", "timeout", "pool", "pile", "pile_index", "owner", "status", "result", "error",
    "submitted_at", "started_at", "finished_at", "retries", "backoff", "attempt", "attempts", "not_before",
)  # fmt: skip
#: A job row's columns (the order of `store._load`'s SELECT).
JOB_COLUMNS = (
    "seq, id, task, args, timeout, pool, pile, pile_index, owner, status, result, error, submitted_at, started_at,"
    " finished_at, listed, retries, backoff, attempt, attempts, not_before"
)
_CHUNK = 256  # rows per statement at most (21 columns: 5,376 parameters, well under SQLite's 32,766)
_UPSERT_PILE = (
    "INSERT INTO piles (id, owner, closed, finished_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " closed = excluded.closed, finished_at = excluded.finished_at"
)


class Journal:
    """Changes in (`append`, hub thread), commits out (the writer thread), `flush` in between."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.path = path
        self.appended = 0  # changes appended (hub thread)
        self.committed = 0  # of them, committed (writer thread)
        self.commits = 0
        self.error: str | None = None  # the last failure while it lasts
        self._conn = conn
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        self.used_bytes = self._used_bytes()  # the pages in use (not free), as of the last measure
        self._started = self._measured = 0.0  # time.monotonic() when the last commit started, the last measure
        self._changes: deque[tuple[int, Any, Any]] = deque()
        self._doomed: dict[int, None] = {}  # writer thread: seqs of evicted jobs whose rows are not deleted yet
        self._doomed_since = 0.0
        self._work = threading.Event()
        self._closing = False
        self._bell: Doorbell | None = None  # made by the first flush, on its hub
        self._waiters: deque[list[Any]] = deque()  # [appended count to wait for, green thread or None: gone]
        self._listening = False
        self._thread = threading.Thread(target=self._write, name="greenpool.store", daemon=True)
        self._thread.start()

    def append(self, kind: int, key: Any, row: Any = None) -> None:
        """Queue one change for the next commit (thread-safe against the writer; never blocks)."""
        self._changes.append((kind, key, row))
        self.appended += 1
        if not self._work.is_set():
            self._work.set()

    def flush(self) -> None:
        """Park the calling green thread until every change appended so far is committed; StoreError if
        commits fail meanwhile (the changes stay queued: they are committed once the writer can)."""
        target = self.appended
        while self.committed < target:
            if self.error is not None:
                raise StoreError(f"the store file {self.path} cannot be written now: {self.error}")
            if self._bell is None:
                self._bell = Doorbell()
            me = [target, getcurrent()]
            self._waiters.append(me)
            if not self._listening:
                self._listening = True
                spawn_n(self._listen)
            if self.committed >= target:  # committed while the bell was being made: no ring will come for it
                me[1] = None
                return
            try:
                self._bell.hub.park()
            finally:
                me[1] = None  # the listener wakes it no more (committed already, failed, killed or timed out)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, stop the writer and close the connection (blocks: at exit only). Waits at
        most `timeout` s (None: for ever) for a writer that cannot commit (a full disk), which is left behind."""
        if self._closing:
            return
        self._closing = True
        self._work.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("store closed with changes not committed", extra={"path": self.path, "error": self.error,
                                                                        "changes": self.appended - self.committed})
            return
        self._conn.close()
        if self._bell is not None:
            self._bell.close()

    def _listen(self) -> None:
        """While green threads wait in `flush`: wake each once its changes are committed. It looks before it
        waits: a commit that ended before the writer could see the bell rang nothing."""
        waiters, bell = self._waiters, self._bell
        assert bell is not None
        try:
            while waiters:
                committed, failed = self.committed, self.error is not None
                while waiters and (failed or waiters[0][0] <= committed):
                    waiter = waiters.popleft()[1]
                    if waiter is not None:
                        bell.hub.wake(waiter)
                if waiters:
                    bell.wait()
        finally:
            self._listening = False

    # -- the writer thread ----------------------------------------------------------------------
    def _write(self) -> None:
        changes, work = self._changes, self._work
        while True:
            if not self._closing:  # closing: drain what is left without waiting
                if not work.wait(_DOOMED_S if self._doomed else None):  # idle: delete the evicted rows now
                    self._commit([], force=True)
                    self._measure()  # retention's deletes free pages: the byte cap may admit work again
                    continue
                gather = self._started + _GATHER_S - time.monotonic()
                if gather > 0 and len(changes) < _GATHER_CHANGES:
                    time.sleep(gather)  # let more changes join this commit: fewer, larger commits
            work.clear()
            batch = []
            while changes:
                batch.append(changes.popleft())
            if batch:
                self._started = time.monotonic()
                self._commit(batch)
                self.committed += len(batch)
                self.commits += 1
                if self._bell is not None:
                    self._bell.ring()
                if self._started >= self._measured + _MEASURE_S:
                    self._measure()
            elif self._closing:
                if self._doomed:
                    self._commit([], force=True)
                return

    def _commit(self, batch: list[tuple[int, Any, Any]], force: bool = False) -> None:
        """Write `batch` in one transaction, retrying until it commits.

        The rows of evicted jobs (UNJOB) wait in `_doomed` and are deleted together, 256 at a time, after at
        most `_DOOMED_S`, when the writer is idle, or at close (`force`): nobody waits for a delete (a
        recovery that finds such a row keeps the record, as when its eviction had not been committed), and a
        batch of job rows alone is one statement that commits by itself, without BEGIN and COMMIT: each
        statement lets go of the GIL and must win it back from the busy hub."""
        tables: list[dict[Any, Any]] = [{} for _ in range(4)]  # jobs, piles, keys, sizes: the last change wins
        jobs, doomed = tables[0], self._doomed
        results = []
        unlisted: dict[int, None] = {}  # seqs of rows already in the file to mark unlisted (no row of theirs here)
        for kind, key, row in batch:
            if kind == RESULT:
                results.append(row)
            elif kind == UNLIST:  # evicted but kept for its pile: its last row here is written unlisted
                last = jobs.get(key)
                if last is None:
                    unlisted[key] = None
                else:
                    jobs[key] = (UNLIST, last[1])
            elif kind == UNJOB:
                if not doomed:
                    self._doomed_since = time.monotonic()
                doomed[key] = None
                jobs.pop(key, None)
            else:
                tables[_TABLE[kind]][key] = (kind, row)
                if kind == JOB:
                    if doomed:
                        doomed.pop(key, None)
                    if unlisted:
                        unlisted.pop(key, None)
        gone: list[int] = []
        if doomed and (force or len(doomed) >= _CHUNK or time.monotonic() - self._doomed_since >= _DOOMED_S):
            gone = list(doomed)
        delay = _RETRY[0]
        while True:
            try:
                self._apply(*tables, results, gone, list(unlisted))
                for seq in gone:
                    del doomed[seq]
                if self.error is not None:
                    log.warning("store writable again", extra={"path": self.path})
                    self.error = None
                return
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                        self._conn.execute("ROLLBACK")
                first, self.error = self.error is None, str(exc)
                if first:
                    log.error("store commit failed; retrying", extra={"path": self.path, "error": self.error})
                    if self._bell is not None:
                        self._bell.ring()  # waiting flushes give up (503) rather than wait for the disk
                time.sleep(delay)
                delay = min(_RETRY[1], delay * 2)

    def _used_bytes(self) -> int:
        conn = self._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self._page_size

    def _measure(self) -> None:
        """Update `used_bytes`; give free pages back to the file system when there are many."""
        conn = self._conn
        self._measured = time.monotonic()
        try:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > _VACUUM_PAGES and 4 * free > conn.execute("PRAGMA page_count").fetchone()[0]:
                conn.execute("PRAGMA incremental_vacuum")
            self.used_bytes = self._used_bytes()
        except sqlite3.Error as exc:  # measured again after the next commit
            log.warning("store size not measured", extra={"path": self.path, "error": str(exc)})

    def _apply(self, jobs: dict, piles: dict, keys: dict, sizes: dict, results: list, gone: list,
               unlisted: list) -> None:  # fmt: skip
        """One transaction; a statement only for what the batch holds (each call into sqlite3 lets go of
        the GIL and waits to take it back from the busy hub: most batches are jobs and results only), and
        no BEGIN/COMMIT around a batch that is one statement."""
        conn = self._conn
        rows = [_job_row(row, kind == JOB) for kind, row in jobs.values()]
        # the last change of every job is a JOB or an UNLIST (UNJOBs wait in `_doomed`)
        parts = (rows, gone, results, unlisted)
        if not (piles or keys or sizes) and sum(1 for part in parts if part) <= 1 and max(map(len, parts)) <= _CHUNK:
            for part, sql in zip(parts, (_UPSERT_JOBS, _DELETE_JOBS, _UPSERT_RESULTS, _UNLIST_JOBS), strict=True):
                _chunked(conn, sql, part)
            return
        conn.execute("BEGIN")
        _chunked(conn, _UPSERT_JOBS, rows)
        _chunked(conn, _DELETE_JOBS, gone)
        _chunked(conn, _UNLIST_JOBS, unlisted)
        _chunked(conn, _UPSERT_RESULTS, results)
        if piles:
            conn.executemany(_UPSERT_PILE, [row for kind, row in piles.values() if kind == PILE])
            gone = [(pile_id,) for pile_id, (kind, _) in piles.items() if kind == UNPILE]
            if gone:
                for table, column in (("results", "pile"), ("jobs", "pile"), ("piles", "id")):
                    conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", gone)
        if keys:
            _chunked(conn, _UPSERT_KEYS, [r for k, r in keys.values() if k == KEY])
            _chunked(conn, _DELETE_KEYS, [k for k, (kind, _) in keys.items() if kind == UNKEY])
        if sizes:
            conn.executemany("INSERT OR REPLACE INTO sizes VALUES (?, ?)", [(k, r) for k, (kind, r) in sizes.items()
                                                                            if kind == SIZE])  # fmt: skip
            conn.executemany("DELETE FROM sizes WHERE pool = ?", [(k,) for k, (kind, _) in sizes.items()
                                                                  if kind == UNSIZE])  # fmt: skip
        conn.execute("COMMIT")


@functools.cache
def _values(head: str, width: int, rows: int) -> str:
    """`head VALUES (?, ...), ...`: `rows` rows of `width` parameters."""
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}"


@functools.cache
def _among(head: str, rows: int) -> str:
    """`head IN (?, ...)` with `rows` parameters."""
    return f"{head} IN ({', '.join('?' * rows)})"


_UPSERT_JOBS = functools.partial(_values, f"INSERT OR REPLACE INTO jobs ({JOB_COLUMNS})", 21)
_UPSERT_RESULTS = functools.partial(_values, "INSERT OR REPLACE INTO results", 3)
_UPSERT_KEYS = functools.partial(_values, "INSERT OR REPLACE INTO keys", 3)
_DELETE_JOBS = functools.partial(_among, "DELETE FROM jobs WHERE seq")
_DELETE_KEYS = functools.partial(_among, "DELETE FROM keys WHERE k")
_UNLIST_JOBS = functools.partial(_among, "UPDATE jobs SET listed = 0 WHERE seq")


def _chunked(conn: sqlite3.Connection, sql: Callable[[int], str], rows: list) -> None:
    """Execute `sql(n)` on chunks of at most _CHUNK rows: one statement per chunk rather than per row, so
    fewer trips through the sqlite3 module, each of which lets go of the GIL and must take it back from the
    busy hub. A short chunk is padded (by repeating its last row: every statement here is idempotent per
    row, an upsert by primary key or a delete) up to a size with at most four per power of two, so one
    statement nearly always carries it and few distinct statements are prepared and cached."""
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        n = len(chunk)
        if n > 4:
            step = 1 << (n.bit_length() - 3)
            chunk += [chunk[-1]] * (-n % step)
            n = len(chunk)
        conn.execute(sql(n), [value for row in chunk for value in row] if isinstance(chunk[0], tuple) else chunk)


def _job_row(row: tuple, listed: bool) -> tuple:
    """A job's row from a JOB change's `JOB_FIELDS`, with its args, result, error and attempts as JSON text
    (encoded here, off the hub, by the API's own encoder: orjson, several times faster than `json.dumps`, and
    what the file holds reads back the same as what a client was sent)."""
    seq, job_id, task, args, timeout, pool, pile, index, owner, status, result, error, *times, attempts, nb = row
    return (seq, job_id, task, dumps(args).decode(), timeout, pool, pile, index, owner, status,
            dumps(result).decode(), None if error is None else dumps(error).decode(), *times[:3], int(listed),
            *times[3:], None if attempts is None else dumps(attempts).decode(), nb)  # fmt: skip

"""The journal: every change the store makes, written to the file by ONE writer OS thread, many per commit.

The hub appends changes (plain tuples) to a deque and never waits for the disk; the writer thread owns the
write connection, takes every change queued so far, folds changes to one row into the last one, writes them
in one transaction and commits: a group commit, as large as what arrived while the previous one was on
its way to the disk. `flush()` parks the calling green thread (never the hub) until everything it changed
is committed, woken through a `pool_core.threads.Doorbell`: that is how a 202/201 waits for its commit.
A commit that fails (disk full, a locked file) is retried with the same changes until it succeeds.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from typing import Any

from greenlet import getcurrent  # the greenlet itself: the hub parks and wakes greenlets, not GreenThreads

from pool_core import spawn_n
from pool_core.threads import Doorbell

__all__ = ["Journal"]

log = logging.getLogger("greenpool.store")
JOB, UNJOB, PILE, UNPILE, RESULT, KEY, UNKEY, SIZE, UNSIZE = range(9)  # change kinds: (kind, key, row)
_TABLE = (0, 0, 1, 1, -1, 2, 2, 3, 3)  # kind → the table whose last change per key wins (jobs, piles, keys, sizes)
_RETRY = (0.01, 1.0)  # seconds between attempts of a failed commit: first, at most
_dumps = json.dumps

_UPSERT_JOB = "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        self._changes: deque[tuple[int, Any, Any]] = deque()
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
        """Park the calling green thread until every change appended so far is committed."""
        target = self.appended
        if self.committed >= target:
            return
        if self._bell is None:
            self._bell = Doorbell()
        me = [target, getcurrent()]
        self._waiters.append(me)
        if not self._listening:
            self._listening = True
            spawn_n(self._listen)
        try:
            while self.committed < target:
                self._bell.hub.park()
        finally:
            me[1] = None  # the listener wakes it no more (committed already, killed or timed out)

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the connection (blocks: at exit only)."""
        self._closing = True
        self._work.set()
        self._thread.join()
        self._conn.close()
        if self._bell is not None:
            self._bell.close()

    def _listen(self) -> None:
        """While green threads wait in `flush`: wake each once its changes are committed."""
        waiters, bell = self._waiters, self._bell
        assert bell is not None
        try:
            while waiters:
                bell.wait()
                committed = self.committed
                while waiters and waiters[0][0] <= committed:
                    waiter = waiters.popleft()[1]
                    if waiter is not None:
                        bell.hub.wake(waiter)
        finally:
            self._listening = False

    # -- the writer thread ----------------------------------------------------------------------
    def _write(self) -> None:
        changes, work = self._changes, self._work
        while True:
            if not self._closing:  # closing: drain what is left without waiting
                work.wait()
            work.clear()
            batch = []
            while changes:
                batch.append(changes.popleft())
            if batch:
                self._commit(batch)
                self.committed += len(batch)
                self.commits += 1
                if self._bell is not None:
                    self._bell.ring()
            elif self._closing:
                return

    def _commit(self, batch: list[tuple[int, Any, Any]]) -> None:
        """Write `batch` in one transaction, retrying until it commits."""
        tables: list[dict[Any, Any]] = [{} for _ in range(4)]  # jobs, piles, keys, sizes: the last change wins
        results = []
        for kind, key, row in batch:
            if kind == RESULT:
                results.append(row)
            else:
                tables[_TABLE[kind]][key] = (kind, row)
        delay = _RETRY[0]
        while True:
            try:
                self._apply(*tables, results)
                if self.error is not None:
                    log.warning("store writable again", extra={"path": self.path})
                    self.error = None
                return
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if self.error is None:
                    log.error("store commit failed; retrying", extra={"path": self.path, "error": str(exc)})
                self.error = str(exc)
                time.sleep(delay)
                delay = min(_RETRY[1], delay * 2)

    def _apply(self, jobs: dict, piles: dict, keys: dict, sizes: dict, results: list) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        conn.executemany(_UPSERT_JOB, [_job_row(row) for kind, row in jobs.values() if kind == JOB])
        conn.executemany("DELETE FROM jobs WHERE seq = ?", [(s,) for s, (kind, _) in jobs.items() if kind == UNJOB])
        conn.executemany(_UPSERT_PILE, [row for kind, row in piles.values() if kind == PILE])
        conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", results)
        gone = [(pile_id,) for pile_id, (kind, _) in piles.items() if kind == UNPILE]
        for table, column in (("results", "pile"), ("jobs", "pile"), ("piles", "id")):
            conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", gone)
        conn.executemany("INSERT OR REPLACE INTO keys VALUES (?, ?, ?)", [r for k, r in keys.values() if k == KEY])
        conn.executemany("DELETE FROM keys WHERE k = ?", [(k,) for k, (kind, _) in keys.items() if kind == UNKEY])
        conn.executemany("INSERT OR REPLACE INTO sizes VALUES (?, ?)", [(k, r) for k, (kind, r) in sizes.items()
                                                                        if kind == SIZE])  # fmt: skip
        conn.executemany("DELETE FROM sizes WHERE pool = ?", [(k,) for k, (kind, _) in sizes.items() if kind == UNSIZE])
        conn.execute("COMMIT")


def _job_row(row: tuple) -> tuple:
    """A job's row with its args, result and error as JSON (encoded here, off the hub)."""
    seq, job_id, task, args, timeout, pool, pile, index, owner, status, result, error, *times, listed = row
    return (seq, job_id, task, _dumps(args), timeout, pool, pile, index, owner, status,
            _dumps(result), None if error is None else _dumps(error), *times, listed)  # fmt: skip

"""The SQLite store (`GREENPOOL_STORE=sqlite:PATH`): the memory store's ports, each change also journaled.

The records the engine works with live in memory exactly as in the memory store (whose classes these
extend), so every compare-and-set and claim is atomic the same way, and reads never touch the disk. Each
change is appended to the journal, which one OS thread commits to the file (group commit); `flush()` waits
for it, so the engine acknowledges nothing before its commit. At start the file is loaded back: records,
queued jobs in their order, piles with their result logs (stream positions), idempotency keys, pool sizes.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import Any

from ..memory import (
    MemoryIdempotencyKeys,
    MemoryJobQueue,
    MemoryJobRecords,
    MemoryPileRecords,
    MemoryPoolSizes,
    MemoryResultLogs,
    MemoryStore,
)
from ..records import QUEUED, TERMINAL, Job, Pile
from .journal import (
    JOB,
    JOB_COLUMNS,
    JOB_FIELDS,
    KEY,
    PILE,
    RESULT,
    SIZE,
    UNJOB,
    UNKEY,
    UNLIST,
    UNPILE,
    UNSIZE,
    Journal,
)
from .schema import connect

__all__ = ["SqliteStore"]

_PICKLE = pickle.HIGHEST_PROTOCOL


#: A job's fields as a JOB change carries them (args, result and error still objects): one C call, no
#: Python frame, for the snapshot the hub takes at each of a job's changes.
_row: Callable[[Job], tuple] = attrgetter(*JOB_FIELDS)


class SqliteJobRecords(MemoryJobRecords):
    def __init__(self, max_records: int, journal: Journal, evicted: Callable[[Job], None]) -> None:
        super().__init__(max_records, evicted)
        self._journal = journal

    def add(self, job: Job) -> None:
        super().add(job)
        self._journal.append(JOB, job.seq, _row(job))

    def finish(self, job: Job, status: str, result: Any, error: dict[str, str] | None, at: float) -> str | None:
        was = super().finish(job, status, result, error, at)
        if was is not None and job.id in self._jobs:  # else evicted at once (max_records 0): _evict wrote it
            self._journal.append(JOB, job.seq, _row(job))
        return was

    def retry(self, job: Job, status: str, error: dict[str, str] | None, at: float, not_before: float) -> bool:
        retried = super().retry(job, status, error, at, not_before)
        if retried:
            self._journal.append(JOB, job.seq, _row(job))
        return retried

    def _evict(self, job: Job) -> None:
        super()._evict(job)
        if job.pile is None:
            self._journal.append(UNJOB, job.seq)
        else:  # kept for its pile's result log until the pile expires: its row stays, marked unlisted
            self._journal.append(UNLIST, job.seq)


class SqliteJobQueue(MemoryJobQueue):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def take(self, at: float) -> Job | None:
        job = super().take(at)
        if job is not None:
            self._journal.append(JOB, job.seq, _row(job))
        return job


class SqlitePileRecords(MemoryPileRecords):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def add(self, pile: Pile) -> None:
        super().add(pile)
        self._write(pile)

    def add_job(self, pile: Pile, job: Job) -> int:
        index = super().add_job(pile, job)
        self._journal.append(JOB, job.seq, _row(job))
        return index

    def close(self, pile: Pile, at: float) -> None:
        super().close(pile, at)
        self._write(pile)

    def _drop(self, pile: Pile) -> None:
        super()._drop(pile)
        self._journal.append(UNPILE, pile.id)

    def _write(self, pile: Pile) -> None:
        self._journal.append(PILE, pile.id, (pile.id, pile.owner, int(pile.closed), pile.finished_at))


class SqliteResultLogs(MemoryResultLogs):
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def append(self, pile: Pile, job: Job, at: float) -> int:
        position = super().append(pile, job, at)
        journal = self._journal
        journal.append(RESULT, None, (pile.id, position, job.seq))
        if pile.finished_at is not None:
            journal.append(PILE, pile.id, (pile.id, pile.owner, int(pile.closed), pile.finished_at))
        return position


class SqliteIdempotencyKeys(MemoryIdempotencyKeys):
    def __init__(self, limit: int, journal: Journal) -> None:
        super().__init__(limit)
        self._journal = journal
        self._n = 0  # claim order, kept in the file

    def claim(self, key: Hashable, value: Any) -> Any:
        found = super().claim(key, value)
        if found is None and key in self._values:
            self._n += 1
            k = pickle.dumps(key, _PICKLE)
            self._journal.append(KEY, k, (k, self._n, pickle.dumps(value, _PICKLE)))
        return found

    def _forget(self, key: Hashable) -> None:
        super()._forget(key)
        self._journal.append(UNKEY, pickle.dumps(key, _PICKLE))


class SqlitePoolSizes(MemoryPoolSizes):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def set(self, pool: str, size: int) -> None:
        super().set(pool, size)
        self._journal.append(SIZE, pool, size)

    def delete(self, pool: str) -> None:
        super().delete(pool)
        self._journal.append(UNSIZE, pool)


class SqliteStore(MemoryStore):
    """Every port, kept in memory for speed and atomicity and journaled to the SQLite file at `path`."""

    durable = True

    def __init__(self, path: str, max_records: int, sync: str = "normal", max_bytes: int = 0) -> None:
        self.path = path
        self.max_bytes = max_bytes  # the cap on the pages in use (0: none): beyond it, no new work
        conn = connect(path, sync)
        journal = self.journal = Journal(conn, path)
        self.piles = SqlitePileRecords(journal)
        self.jobs = SqliteJobRecords(max_records, journal, self.piles.forget)
        self.results = SqliteResultLogs(journal)
        self.keys = SqliteIdempotencyKeys(max_records, journal)
        self.sizes = SqlitePoolSizes(journal)
        self._queues: dict[str, SqliteJobQueue] = {}  # type: ignore[assignment]
        self.recovered = _load(self, conn)

    def queue(self, pool: str) -> SqliteJobQueue:
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = SqliteJobQueue(self.journal)
        return queue

    def flush(self) -> None:
        self.journal.flush()

    def unavailable(self) -> str | None:
        journal = self.journal
        if journal.error is not None:
            return f"the store file {self.path} cannot be written now: {journal.error}"
        if self.max_bytes and journal.used_bytes >= self.max_bytes:
            used, cap = journal.used_bytes, self.max_bytes
            return f"the store file {self.path} is full: {used} bytes in use of GREENPOOL_MAX_STORE_BYTES={cap}"
        return None

    def close(self, timeout: float | None = None) -> None:
        self.journal.close(timeout)


def _load(store: SqliteStore, conn: Any) -> dict[str, int]:
    """Fill the in-memory ports from the file (before the writer sees any change); counts of what came back."""
    loads = json.loads
    jobs, piles = store.jobs, store.piles
    for pool, size in conn.execute("SELECT pool, size FROM sizes"):
        MemoryPoolSizes.set(store.sizes, pool, size)
    by_id: dict[str, Pile] = {}
    rows = conn.execute("SELECT id, owner, closed, finished_at FROM piles ORDER BY n")
    for pile_id, owner, closed, finished_at in rows:
        pile = by_id[pile_id] = Pile(pile_id, owner)
        pile.closed, pile.finished_at = bool(closed), finished_at
        piles._piles[pile_id] = pile
    by_seq: dict[int, Job] = {}
    ended: list[Job] = []
    queued = 0
    for row in conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY seq"):
        (seq, job_id, task, args, timeout, pool, pile_id, index, owner, status, result, error, submitted_at,
         started_at, finished_at, listed, retries, backoff, attempt, attempts, not_before) = row  # fmt: skip
        job = Job(job_id, task, loads(args), timeout, submitted_at, pool, pile_id, owner)
        job.seq, job.pile_index, job.status = seq, index, status
        job.started_at, job.finished_at = started_at, finished_at
        job.result, job.error = loads(result), (None if error is None else loads(error))
        job.retries, job.backoff, job.attempt, job.not_before = retries, backoff, attempt, not_before
        job.attempts = None if attempts is None else loads(attempts)
        by_seq[seq] = job
        jobs._seq = seq
        if listed:
            jobs._jobs[job_id] = job
            if status in TERMINAL:
                ended.append(job)
        if pile_id is not None and pile_id in by_id:
            by_id[pile_id].jobs.append(job)
        if status == QUEUED:
            queue = store.queue(pool)
            queue.queued += 1
            queue.push(job)  # in order; one with a `not_before` is held back until it is due
            queued += 1
    ended.sort(key=lambda job: job.finished_at)  # the eviction order: the order they ended
    jobs._ended.extend(ended)
    for pile in by_id.values():
        pile.jobs.sort(key=lambda job: job.pile_index)
    for pile_id, _, seq in conn.execute("SELECT pile, position, seq FROM results ORDER BY pile, position"):
        job = by_seq[seq]
        pile = by_id[pile_id]
        pile.log.append(job)
        pile.counts[job.status] += 1
    keys = store.keys
    for k, n, value in conn.execute("SELECT k, n, value FROM keys ORDER BY n"):
        keys._values[pickle.loads(k)] = pickle.loads(value)
        keys._n = n
    return {"jobs": len(jobs._jobs), "queued": queued, "piles": len(by_id), "keys": len(keys)}

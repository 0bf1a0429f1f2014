"""The memory store: every port in this process's memory (`GREENPOOL_STORE=memory`; survives nothing).

Each method runs to its end without parking the calling green thread, so on one hub every method is
atomic: that is how this store keeps the ports' compare-and-set and claim guarantees.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

from .records import COMPLETION, QUEUED, RUNNING, TERMINAL, Evicted, Job, Pile

__all__ = ["MemoryStore"]


class MemoryJobRecords:
    """Records by id in submission order; ended ones also in a FIFO that bounds them to `max_records`.
    `evicted(job)` is told of each pile member evicted by that bound (its pile lets go of it too)."""

    def __init__(self, max_records: int, evicted: Callable[[Job], None] | None = None) -> None:
        self.max_records = max_records
        self._evicted = evicted
        self._jobs: dict[str, Job] = {}
        self._ended: deque[Job] = deque()
        self._seq = 0

    def add(self, job: Job) -> None:
        self._seq += 1
        job.seq = self._seq
        self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def finish(self, job: Job, status: str, result: Any, error: dict[str, str] | None, at: float) -> str | None:
        was = job.status
        if was in TERMINAL:
            return None
        job.status = status
        job.result = result
        job.error = error
        job.finished_at = at
        ended = self._ended
        ended.append(job)
        while len(ended) > self.max_records:
            old = ended.popleft()
            self._evict(old)
            if old.pile is not None and self._evicted is not None:
                self._evicted(old)
        return was

    def select(self, status: str | None = None, owner: str | None = None, before: int | None = None,
               limit: int | None = None) -> list[Job]:  # fmt: skip
        found: list[Job] = []
        for job in reversed(self._jobs.values()):
            if before is not None and job.seq >= before:
                continue
            if status is not None and job.status != status:
                continue
            if owner is not None and job.owner != owner:
                continue
            if len(found) == limit:
                break
            found.append(job)
        return found

    def expire(self, horizon: float) -> None:
        ended = self._ended
        while ended and ended[0].finished_at <= horizon:  # type: ignore[operator]
            self._evict(ended.popleft())

    def _evict(self, job: Job) -> None:
        """Forget an ended record (retention)."""
        self._jobs.pop(job.id, None)


class MemoryJobQueue:
    """A deque of jobs; one ended while queued stays in it until `take` skips it."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self.queued = 0

    def reserve(self, count: int, limit: int) -> bool:
        if self.queued + count > limit:
            return False
        self.queued += count
        return True

    def release(self, count: int) -> None:
        self.queued -= count

    def push(self, job: Job) -> None:
        self._jobs.append(job)

    def take(self, at: float) -> Job | None:
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()
            if job.status == QUEUED:
                job.status = RUNNING
                job.started_at = at
                self.queued -= 1
                return job
        return None

    def discard(self, job: Job) -> None:
        self.queued -= 1


class MemoryPileRecords:
    """Piles by id; a pile's members are its own list (an `Evicted` for one whose record was evicted)."""

    def __init__(self) -> None:
        self._piles: dict[str, Pile] = {}

    def add(self, pile: Pile) -> None:
        self._piles[pile.id] = pile

    def get(self, pile_id: str) -> Pile | None:
        return self._piles.get(pile_id)

    def add_job(self, pile: Pile, job: Job) -> int:
        job.pile_index = index = len(pile.jobs)
        pile.jobs.append(job)
        pile.active_at = job.submitted_at
        return index

    def close(self, pile: Pile, at: float) -> None:
        pile.closed = True
        pile.active_at = at
        _mark_complete(pile, at)

    def forget(self, job: Job) -> None:
        """The record of member `job` was evicted: its pile, if still kept, keeps only an `Evicted` of it."""
        pile = self._piles.get(job.pile)  # type: ignore[arg-type]
        if pile is not None:
            pile.jobs[job.pile_index] = evicted = Evicted(job)
            if job.position >= 0:
                pile.log[job.position] = evicted

    def open_piles(self) -> list[Pile]:
        return [pile for pile in self._piles.values() if not pile.closed]

    def expire(self, horizon: float) -> None:
        piles = self._piles
        for pile in [p for p in piles.values() if _expired(p, horizon)]:
            self._drop(pile)

    def _drop(self, pile: Pile) -> None:
        """Forget a pile (retention)."""
        del self._piles[pile.id]


class MemoryResultLogs:
    """A pile's result log is its own list of ended jobs."""

    def append(self, pile: Pile, job: Job, at: float) -> int:
        job.position = len(pile.log)
        pile.log.append(job)
        pile.counts[job.status] += 1
        pile.active_at = at
        _mark_complete(pile, at)
        return job.position

    def read(
        self, pile: Pile, after: int, order: str, limit: int | None = None
    ) -> tuple[list[Job | Evicted], int, bool]:
        start, jobs = after + 1, pile.jobs
        if order == COMPLETION:
            records = pile.log[start:] if limit is None else pile.log[start : start + limit]
            end = start + len(records)
        else:
            end, stop = start, len(jobs) if limit is None else min(len(jobs), start + limit)
            while end < stop and jobs[end].status in TERMINAL:
                end += 1
            records = jobs[start:end]
        return records, end, pile.closed and end >= len(jobs)


class MemoryIdempotencyKeys:
    """Keys in claim order, at most `limit` (the oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._values: OrderedDict[Hashable, Any] = OrderedDict()

    def claim(self, key: Hashable, value: Any) -> Any:
        values = self._values
        existing = values.get(key)
        if existing is not None:
            return existing
        values[key] = value
        while len(values) > self.limit:
            self._forget(next(iter(values)))
        return None

    def release(self, key: Hashable, value: Any) -> None:
        if self._values.get(key) == value:
            self._forget(key)

    def prune(self, live: Callable[[Any], bool], count: int) -> None:
        values = self._values
        for _ in range(count):
            if not values:
                return
            key, value = next(iter(values.items()))
            if live(value):
                return
            self._forget(key)

    def __len__(self) -> int:
        return len(self._values)

    def _forget(self, key: Hashable) -> None:
        del self._values[key]


class MemoryPoolSizes:
    """Sizes by pool name."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}

    def get(self, pool: str) -> int | None:
        return self._sizes.get(pool)

    def set(self, pool: str, size: int) -> None:
        self._sizes[pool] = size

    def delete(self, pool: str) -> None:
        self._sizes.pop(pool, None)

    def all(self) -> dict[str, int]:
        return dict(self._sizes)


class MemoryStore:
    """Every port in memory; ended job records bounded to `max_records`, keys likewise."""

    durable = False

    def __init__(self, max_records: int) -> None:
        self.piles = MemoryPileRecords()
        self.jobs = MemoryJobRecords(max_records, self.piles.forget)
        self.results = MemoryResultLogs()
        self.keys = MemoryIdempotencyKeys(max_records)
        self.sizes = MemoryPoolSizes()
        self._queues: dict[str, MemoryJobQueue] = {}

    def queue(self, pool: str) -> MemoryJobQueue:
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = MemoryJobQueue()
        return queue

    def flush(self) -> None:
        """Nothing to wait for: memory is as durable as it gets."""

    def unavailable(self) -> str | None:
        """Never: memory takes what the queue's bound lets in."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def _expired(pile: Pile, horizon: float) -> bool:
    """Completed at or before `horizon`, or open, with nothing pending, and idle since then."""
    if pile.finished_at is not None:
        return pile.finished_at <= horizon
    return not pile.closed and len(pile.log) == len(pile.jobs) and pile.active_at <= horizon


def _mark_complete(pile: Pile, at: float) -> None:
    if pile.finished_at is None and pile.complete:
        pile.finished_at = at

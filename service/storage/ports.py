"""The storage ports: the only ways the engine reaches its records, queues, result logs, keys and pool sizes.

Each port is a small Protocol, in the spirit of httpx's `BaseTransport`; `memory.py` implements them all
in this process, and a durable or shared store implements the same methods with the same guarantees.
Every guarantee written "atomically" below is a contract: the memory store keeps it because nothing in it
parks the calling green thread, a store that does I/O must keep it with a transaction or a script.
A record handed to a port (a `Job` or `Pile`) is the caller's copy; a port may update it in place to
match what it stored.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from .records import Evicted, Job, Pile

__all__ = [
    "IdempotencyKeys", "JobQueue", "JobRecords", "PileRecords", "PoolSizes", "ResultLogs", "Store", "StoreError",
]  # fmt: skip


class StoreError(Exception):
    """A store that cannot be used (a file that cannot be opened, read or migrated); the message names it."""


class JobRecords(Protocol):
    """Job records by id, kept while queued or running and, once ended, within the store's retention."""

    def add(self, job: Job) -> None:
        """Store a new `queued` record (its id is new) and set its `seq`: greater than every earlier job's."""

    def get(self, job_id: str) -> Job | None:
        """The record with this id; None if unknown or already evicted."""

    def finish(self, job: Job, status: str, result: Any, error: dict[str, str] | None, at: float) -> str | None:
        """Compare-and-set into terminal `status`: atomically, if the job has not ended, set its status,
        result, error and `finished_at` and return the status it had (`queued` or `running`); if it had
        ended already, change nothing and return None. So of several callers racing to end one job (it
        returns, a cancel, its timeout, a drain) exactly one wins. An ended record may then be evicted
        (at most `max_records` ended records are kept, oldest first); a pile lets go of a member evicted so
        (see `ResultLogs.read`), so piles hold no more results than this bound."""

    def select(self, status: str | None = None, owner: str | None = None, before: int | None = None,
               limit: int | None = None) -> list[Job]:  # fmt: skip
        """Up to `limit` records, newest first (by `seq`), of one status and/or owner, with `seq < before`."""

    def expire(self, horizon: float) -> None:
        """Evict every record that ended at or before `horizon` (wall-clock seconds)."""


class JobQueue(Protocol):
    """One pool's FIFO of queued jobs, with the count its admission bound is checked against."""

    queued: int
    """Jobs queued now, reserved places included (read on every dispatch: keep it cheap, e.g. cached)."""

    def reserve(self, count: int, limit: int) -> bool:
        """Compare-and-set admission: atomically, if `queued + count <= limit`, count `count` more jobs as
        queued and return True; otherwise change nothing and return False. Each reserved place is then
        filled by one `push` (the caller pushes exactly `count` jobs)."""

    def release(self, count: int) -> None:
        """Give back `count` places reserved and never pushed (a request whose other pools had no room)."""

    def push(self, job: Job) -> None:
        """Append a `queued` job (its place was reserved)."""

    def take(self, at: float) -> Job | None:
        """Atomically remove the oldest queued job and mark it `running` (status, `started_at = at`); None if
        no job is queued. A job ended while queued (see `discard`) is never returned."""

    def discard(self, job: Job) -> None:
        """A queued job ended without running (`finish` returned `queued`): it no longer counts as queued and
        `take` never returns it. Called once per such job, by the winner of `finish`."""


class PileRecords(Protocol):
    """Pile records by id, their members in submission order, kept within the store's retention. A pile's
    last activity (`active_at`) is its creation, a member added, a result logged, or its closing."""

    def add(self, pile: Pile) -> None:
        """Store a new, empty pile (its id is new; `active_at` is when it was created)."""

    def get(self, pile_id: str) -> Pile | None:
        """The pile with this id; None if unknown or expired."""

    def add_job(self, pile: Pile, job: Job) -> int:
        """Append `job` to the pile's members; returns its index (also set as `job.pile_index`); the pile's
        `active_at` becomes the job's `submitted_at`."""

    def close(self, pile: Pile, at: float) -> None:
        """No more members will be added (closing twice is harmless); `active_at = at`, and `finished_at = at`
        if now complete."""

    def open_piles(self) -> list[Pile]:
        """Every pile not yet closed."""

    def expire(self, horizon: float) -> None:
        """Evict every pile that completed at or before `horizon` (wall-clock seconds), and every open pile
        with no member pending whose last activity was at or before `horizon` (one never closed expires).
        Atomically per pile: the check and the eviction are one step, so a pile given a member or a result
        since `horizon` is kept."""


class ResultLogs(Protocol):
    """Each pile's result log: its ended jobs in completion order. A record's position in it never changes,
    so positions are stream positions (SSE ids): readers resume with no gap and no duplicate."""

    def append(self, pile: Pile, job: Job, at: float) -> int:
        """Atomically log ended `job` at the next position (and count its status); returns the position
        (also set as `job.position`). Sets `active_at = at`, and `finished_at = at` if the pile is now
        complete."""

    def read(
        self, pile: Pile, after: int, order: str, limit: int | None = None
    ) -> tuple[list[Job | Evicted], int, bool]:
        """The records from position `after + 1` on (at most `limit` of them), the position to read from
        next, and whether the stream is over (the pile is closed and that position is past its last member).
        In `completion` order a position is one in the log; in `submitted` order it is a member's index, and
        reading stops at the first member that has not ended. A member whose job record was evicted for
        `max_records` reads as an `Evicted` (its index, id and status, no result)."""


class IdempotencyKeys(Protocol):
    """Idempotency keys: the first request with a key claims it; later ones find what it stored."""

    def claim(self, key: Hashable, value: Any) -> Any:
        """Atomically: if `key` is unclaimed, store `value` under it and return None; otherwise return the
        value stored, unchanged. Of several callers racing with one key exactly one gets None."""

    def release(self, key: Hashable, value: Any) -> None:
        """Forget `key` if it still holds `value` (its request failed, or its target expired)."""

    def prune(self, live: Callable[[Any], bool], count: int) -> None:
        """Forget up to `count` of the oldest keys whose value is no longer `live`, stopping at a live one."""

    def __len__(self) -> int:
        """Keys held now."""


class PoolSizes(Protocol):
    """The size of each named pool, as last set at runtime."""

    def get(self, pool: str) -> int | None:
        """The stored size; None if none was ever stored (the configuration seeds it)."""

    def set(self, pool: str, size: int) -> None:
        """Store a pool's size (the last write wins)."""

    def delete(self, pool: str) -> None:
        """Forget a pool's size (the pool was deleted; harmless if none is stored)."""

    def all(self) -> dict[str, int]:
        """Every stored size by pool name (a new dict)."""


class Store(Protocol):
    """One store: the ports together, and a queue per pool."""

    jobs: JobRecords
    piles: PileRecords
    results: ResultLogs
    keys: IdempotencyKeys
    sizes: PoolSizes
    durable: bool
    """True if what it holds survives the process (queued jobs are then kept, not cancelled, at shutdown)."""

    def queue(self, pool: str) -> JobQueue:
        """The queue of `pool` (created empty on first use)."""

    def flush(self) -> None:
        """Park the calling green thread until every change made so far is durable (a no-op in memory):
        the engine calls it before a submission, a cancel or a resize is acknowledged. StoreError if the
        store cannot commit now (a full disk, a locked file): the changes stay queued and commit once it can."""

    def unavailable(self) -> str | None:
        """Why the store should take no new work now (it cannot commit, or it is full), or None."""

    def close(self) -> None:
        """Make everything durable and release the store (at exit)."""

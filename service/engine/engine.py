"""The engine's facade: jobs in, results out. Speaks no HTTP; raises `service.engine.errors`.

It wires admission (what may enter), the store's ports (records, queues, result logs, pool sizes), the
runner (one lane per pool: dispatcher, slots, timeouts) and the notifier (what wakes long-polls and
streams). Each accepted job reaches exactly one terminal state through `JobRecords.finish`, whoever gets
there first (the job itself, a cancel, its timeout, or a drain). Finished records are kept for
`result_ttl` seconds and at most `max_records`, oldest evicted first. A pile keeps its members' results
until it expires, `result_ttl` after it completed or (open, nothing pending) after its last activity, and
lets go of a member whose record `max_records` evicted: piles never hold more than that bound.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from pool_core import Timeout, sleep, spawn

from .. import logs
from ..config import Config
from ..storage import Job, Pile, Store, StoreError
from ..storage.records import (
    CANCELLED,
    COMPLETION,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    rfc3339,
)
from ..tasks import Registry
from .admission import Admission, JobSpec
from .errors import Draining, JobAlreadyEnded, JobNotFound, PileClosed, PileNotFound, StoreUnavailable, TooLarge
from .notifier import Notifier
from .runner import DEFAULT_POOL, Lane, Runner
from .stores import open_store

__all__ = ["Engine"]

log = logging.getLogger("greenpool.jobs")
_SWEEP_INTERVAL = 1.0
_IDS_PER_READ = 256  # job and pile ids drawn from one os.urandom call
_RECORDS_PER_BATCH = 64  # result records read and handed to a stream at a time
_STORE_RETRY_AFTER = 5  # seconds a client is told to wait while the store is full or cannot commit
_DEBUG = logging.DEBUG
_monotonic = time.monotonic


class Engine:
    """Jobs in, results out: submit, get, wait, cancel, list, piles, resize, stats, drain.

    `store` (default: the configured one, `open_store`), `clock` (wall-clock seconds, default `time.time`)
    and `ids` (new job and pile ids, default 128 random bits as 32 hex digits) are injectable for tests."""

    def __init__(self, config: Config, registry: Registry, store: Store | None = None,
                 clock: Callable[[], float] = time.time, ids: Iterator[str] | None = None) -> None:  # fmt: skip
        self.config = config
        self.registry = registry
        self.store = store if store is not None else open_store(config)
        self._jobs, self._piles, self._results = self.store.jobs, self.store.piles, self.store.results
        self._clock = clock
        self._ids = ids if ids is not None else _random_ids()
        self._admission = Admission(config, registry)
        self._notifier = Notifier()
        size = self.store.sizes.get(DEFAULT_POOL)
        if size is None:  # the configuration seeds a store that has none
            size = config.pool_size
            self.store.sizes.set(DEFAULT_POOL, size)
        threads = Runner.thread_pool(size, config.max_threads)
        lane = Lane(DEFAULT_POOL, size, self.store.queue(DEFAULT_POOL), registry, clock, config.max_result_bytes,
                    self._started, self._end, threads)  # fmt: skip
        self._lane = lane  # the default pool's lane
        self.runner = Runner({DEFAULT_POOL: lane}, threads, config.max_threads)
        self._lanes = self.runner.lanes
        self._counts = {"submitted": 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self._started_at = _monotonic()
        # Which start of the service this is: a restart shows as a new boot_id (and started_at) to pollers.
        self.boot = {"boot_id": os.urandom(8).hex(), "started_at": rfc3339(time.time())}
        self._sweeper = spawn(self._sweep)
        # Observers (service.api.metrics): observer(event, job) on "queued", "running" and each terminal status.
        self.observers: list[Callable[[str, Job], None]] = []

    @property
    def draining(self) -> bool:
        """True once `drain` has started: nothing new is accepted."""
        return self._admission.draining

    def threads(self) -> list[Any]:
        """The engine's own green threads (dispatchers and the sweeper), for a test to stop it."""
        return [*self.runner.threads(), self._sweeper]

    def commit(self) -> None:
        """Park until every change made so far is in the store (at once with a memory store): what a
        201/202 acknowledges must survive a crash (design §7). Many requests' changes share one commit.
        StoreUnavailable if the store cannot commit now: the changes stay queued and commit once it can."""
        try:
            self.store.flush()
        except StoreError as exc:
            raise StoreUnavailable(str(exc), _STORE_RETRY_AFTER) from None

    def new_id(self) -> str:
        """A fresh id for a job or pile (to claim an idempotency key for it before it exists)."""
        return next(self._ids)

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, task: str, args: dict, timeout: float | None = None, owner: str | None = None,
               job_id: str | None = None, client: str | None = None) -> Job:  # fmt: skip
        """Validate and enqueue one job; Draining, QueueFull, StoreUnavailable, TooLarge, UnknownTask or
        InvalidArguments.
        `client` (None: none) is whose share of the queue the job takes (`max_queued_per_client`)."""
        lane, admission = self._lane, self._admission
        admission.check(lane.queue, 1, client)
        self._writable()
        args = admission.validate(task, args)
        admission.reserve(lane.queue, 1, client)
        return self._enqueue(lane, task, args, timeout, None, owner, job_id, client)

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFound if unknown or already evicted."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def wait(self, job: Job, timeout: float) -> bool:
        """Park until `job` ends or `timeout` seconds pass; True if it has ended."""
        if job.status in TERMINAL or timeout <= 0:
            return job.status in TERMINAL
        self._notifier.job_event(job.id).wait(timeout)
        return job.status in TERMINAL

    def list(
        self, status: str | None = None, limit: int = 100, before: int | None = None, owner: str | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest-first jobs (optionally of one status, or one owner) older than cursor `before`; the next cursor."""
        found = self._jobs.select(status, owner, before, limit + 1)
        if len(found) > limit:
            return found[:limit], found[limit - 1].seq
        return found, None

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job never starts, a running one is killed. JobAlreadyEnded if it has ended."""
        job = self.get(job_id)
        if not self._end(job, CANCELLED, "Cancelled", "cancelled on request"):
            raise JobAlreadyEnded(job_id, job.status)
        return job

    # -- piles ----------------------------------------------------------------------------------
    def create_pile(self, specs: list[JobSpec], open: bool = False, owner: str | None = None,
                    pile_id: str | None = None, client: str | None = None) -> Pile:  # fmt: skip
        """A new pile of jobs (all accepted or none) in `client`'s share of the queue; closed unless `open`."""
        lane, admission = self._lane, self._admission
        admission.check(lane.queue, len(specs), client)
        self._writable()
        checked = admission.validate_all(specs)
        admission.reserve(lane.queue, len(checked), client)
        pile = Pile(pile_id or next(self._ids), owner, self._clock())
        self._piles.add(pile)
        for task, args, timeout in checked:
            self._enqueue(lane, task, args, timeout, pile, owner, None, client)
        if not open:
            self._close(pile)
        log.info("pile created", extra={"pile": pile.id, "size": len(specs), "open": open})
        return pile

    def add_to_pile(self, pile_id: str, specs: list[JobSpec], client: str | None = None) -> list[Job]:
        """Append jobs to an open pile (all or none, in `client`'s share of the queue); PileClosed if closed."""
        pile = self.get_pile(pile_id)
        if self.draining:
            raise Draining()
        if pile.closed:
            raise PileClosed(pile_id)
        limit = self.config.max_pile_size
        if pile.size + len(specs) > limit:
            raise TooLarge(
                f"pile {pile_id} has {pile.size} jobs; {len(specs)} more would pass the limit of {limit} per pile",
                limit,
            )
        lane, admission = self._lane, self._admission
        admission.check(lane.queue, len(specs), client)
        self._writable()
        checked = admission.validate_all(specs)
        admission.reserve(lane.queue, len(checked), client)
        owner = pile.owner
        return [self._enqueue(lane, task, args, timeout, pile, owner, None, client) for task, args, timeout in checked]

    def close_pile(self, pile_id: str) -> Pile:
        """Close a pile: its streams end once every job it has has ended (closing twice is harmless)."""
        pile = self.get_pile(pile_id)
        self._close(pile)
        return pile

    def get_pile(self, pile_id: str) -> Pile:
        """The pile with this id; PileNotFound if unknown or expired."""
        pile = self._piles.get(pile_id)
        if pile is None:
            raise PileNotFound(pile_id)
        return pile

    def pile_summary(self, pile: Pile) -> dict[str, Any]:
        """The pile's size and progress, and how many result streams are open on it now (`readers`)."""
        return {**pile.summary(), "readers": self._notifier.readers.get(pile.id, 0)}

    def follow(
        self, pile: Pile, order: str = COMPLETION, after: int = -1, heartbeat: float | None = None
    ) -> Iterator[list[tuple[int, dict]]]:
        """Yield batches of `(position, record)` from stream position `after + 1` on, parking for new
        results in between; an empty batch after `heartbeat` idle seconds lets the caller keep the
        connection alive. A batch holds at most `_RECORDS_PER_BATCH` of the records that are ready (so a
        reader that stops reading pins a bounded amount, whatever the pile's size); the next batch follows at
        once. The pile counts as read (`readers`) from the first batch asked for until the iterator is
        closed or ends."""
        notifier, results, limit = self._notifier, self._results, _RECORDS_PER_BATCH
        notifier.reading(pile.id, 1)
        try:
            position = after + 1
            while True:
                changed = notifier.pile_event(pile.id)
                jobs, end, over = results.read(pile, position - 1, order, limit)
                if jobs:
                    yield [(position + i, job.result_record()) for i, job in enumerate(jobs)]
                if over:
                    return
                position = end
                if len(jobs) == limit:  # more may be ready now
                    continue
                changed.wait(heartbeat)  # returns at once if results arrived while the batch was written
                if self._piles.get(pile.id) is None:  # the pile expired: nothing more will come
                    return
                if not changed.ready():
                    yield []
        finally:
            notifier.reading(pile.id, -1)

    # -- the pool -------------------------------------------------------------------------------
    def resize(self, size: int) -> None:
        """Change how many jobs may run at once (running jobs continue; see GreenPool.resize)."""
        self.store.sizes.set(DEFAULT_POOL, size)
        self.runner.resize(DEFAULT_POOL, size)

    def stats(self) -> dict[str, Any]:
        """The counters `/v1/pool` reports."""
        stats: dict[str, Any] = self._lane.stats()
        stats.update(self._counts)
        stats["uptime_s"] = round(_monotonic() - self._started_at, 3)
        stats.update(self.boot)
        return stats

    def retry_after(self, count: int = 1) -> int:
        """Seconds until the queue has likely drained enough to accept `count` jobs (1..60)."""
        return self._admission.retry_after(self._lane.queue.queued + count - self.config.max_queued)

    # -- shutdown -------------------------------------------------------------------------------
    def drain(self, grace: float) -> None:
        """Stop accepting, let running jobs finish for `grace` s, then end the rest (`_interrupted`). With a
        durable store queued jobs stay queued for the next start (design §7); with a memory store, which
        cannot keep them, they are cancelled and open piles closed, so that their streams end."""
        self._admission.draining = True
        stats = self._lane.stats()
        log.info("draining", extra={"grace_s": grace, "running": stats["running"], "queued": stats["queued"]})
        if self.store.durable:
            for lane in self.runner:
                lane.hold()
        else:
            for job in reversed(self._jobs.select(QUEUED)):
                self._end(job, CANCELLED, "Cancelled", "the server shut down before the job started")
            for pile in self._piles.open_piles():  # no more jobs can come: their streams end with the last result
                self._close(pile)
        try:
            with Timeout(grace, False):
                for lane in self.runner:
                    lane.pool.waitall()
        finally:  # also when the worker's grace period ends first and kills this green thread
            for job in reversed(self._jobs.select(RUNNING)):
                self._interrupted(job)
            log.info("drained", extra={**self._counts, "kept_queued": self._lane.queue.queued})

    def _interrupted(self, job: Job) -> None:
        """End a job still running when the drain's grace period is over."""
        self._end(job, CANCELLED, "Cancelled", "the server shut down before the job ended")

    # -- internals ------------------------------------------------------------------------------
    def _writable(self) -> None:
        """StoreUnavailable if the store should take no new work now (it is full, or cannot commit)."""
        reason = self.store.unavailable()
        if reason is not None:
            raise StoreUnavailable(reason, _STORE_RETRY_AFTER)

    def _enqueue(self, lane: Lane, task: str, args: dict, timeout: float | None, pile: Pile | None,
                 owner: str | None, job_id: str | None = None, client: str | None = None) -> Job:  # fmt: skip
        """Store and queue one validated job whose place in the queue (and `client`'s share) is reserved."""
        job = Job(job_id or next(self._ids), task, args, timeout, self._clock(), lane.name, pile and pile.id, owner)
        self._admission.queued(job.id, client)
        self._jobs.add(job)
        if pile is not None:
            self._piles.add_job(pile, job)
        self._counts["submitted"] += 1
        lane.queue.push(job)
        lane.pushed()
        self._notify(QUEUED, job)
        if log.isEnabledFor(_DEBUG):
            log.debug("job queued", extra={"job_id": job.id, "task": task, "status": QUEUED, "pile": job.pile})
        return job

    def _started(self, job: Job) -> None:
        """A lane started `job` (the queue marked it running)."""
        self._admission.left_queue(job.id)
        self._notify(RUNNING, job)
        if log.isEnabledFor(_DEBUG):
            log.debug("job running", extra={"job_id": job.id, "task": job.task, "status": RUNNING,
                                            "queue_wait_s": _rounded(job.queue_seconds())})  # fmt: skip

    def _end(self, job: Job, status: str, error_type: str | None = None, message: str | None = None,
             result: Any = None) -> bool:  # fmt: skip
        """Put `job` into terminal `status` unless it already ended; kills the job (not its slot) if running."""
        error = None if error_type is None else {"type": error_type, "message": message}
        was = self._jobs.finish(job, status, result, error, self._clock())
        if was is None:
            return False
        lane = self._lanes[job.pool]
        if was == QUEUED:
            lane.queue.discard(job)
        self._admission.left_queue(job.id)  # if it was still counted as queued (harmless otherwise)
        self._counts[status] += 1
        self._admission.ended += 1
        self._notify(status, job)
        self._notifier.job_ended(job.id)
        if log.isEnabledFor(logging.INFO):
            logs.info(log, "job " + status, {"job_id": job.id, "task": job.task, "status": status, "pile": job.pile,
                                             "queue_wait_s": _rounded(job.queue_seconds()),
                                             "run_s": job.run_seconds(), "attempt": 1,
                                             "error_type": error_type})  # fmt: skip
        if job.pile is not None:
            pile = self._piles.get(job.pile)
            if pile is not None:
                self._results.append(pile, job, job.finished_at)  # type: ignore[arg-type]
                self._notifier.pile_changed(pile.id)
        if was == RUNNING and status in (CANCELLED, TIMED_OUT):
            lane.kill(job.id)
        return True

    def recover(self) -> None:
        """After a restart on a durable store (call it once, with the observers attached, so that metrics
        count what it does): every job the store reloaded unfinished counts as submitted to this process
        (an observer sees it `queued`); an attempt that was running when the process died ends `WorkerLost`
        (design §7); the queued jobs run again, in order, as the lanes' dispatchers find them."""
        lost = self._jobs.select(RUNNING)
        for job in reversed(self._jobs.select(QUEUED)):
            self._resubmitted(job)
        for job in reversed(lost):
            self._resubmitted(job)
            self._end(job, FAILED, "WorkerLost", "the server process died while the job was running")
        recovered = getattr(self.store, "recovered", None)
        if recovered is not None:
            log.info("store recovered", extra={**recovered, "worker_lost": len(lost)})

    def _resubmitted(self, job: Job) -> None:
        self._counts["submitted"] += 1
        self._notify(QUEUED, job)

    def _close(self, pile: Pile) -> None:
        self._piles.close(pile, self._clock())
        self._notifier.pile_changed(pile.id)

    def _notify(self, event: str, job: Job) -> None:
        """Tell the observers about a state change; one failing never disturbs the job or the others."""
        for observer in self.observers:
            try:
                observer(event, job)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)

    def _sweep(self) -> None:
        """Once a second: expire old records and update the finish rate behind Retry-After."""
        while True:
            sleep(_SWEEP_INTERVAL)
            self._admission.tick(_SWEEP_INTERVAL)
            horizon = self._clock() - self.config.result_ttl
            self._jobs.expire(horizon)
            self._piles.expire(horizon)
            for pile_id in [p for p in self._notifier.readers if self._piles.get(p) is None]:
                self._notifier.pile_changed(pile_id)  # its streams end


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


def _random_ids() -> Iterator[str]:
    """Unpredictable 128-bit ids as 32 hex digits, as `os.urandom(16).hex()` but one system call per 256."""
    while True:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        for start in range(0, len(block), 32):
            yield block[start : start + 32]

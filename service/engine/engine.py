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

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from pool_core import sleep, spawn

from .. import logs
from ..config import Config
from ..storage import Job, Pile, Store, StoreError
from ..storage.records import (
    CANCELLED,
    QUEUED,
    RUNNING,
    TERMINAL,
    TIMED_OUT,
    rfc3339,
)
from ..tasks import Registry
from .admission import Admission, JobSpec
from .errors import JobAlreadyEnded, JobNotFound, StoreUnavailable
from .held import HeldOutcomes
from .history import History
from .lifecycle import Lifecycle
from .piles import PileMethods
from .pools import DEFAULT_POOL, Pools
from .replicas import open_cluster
from .retries import RETRIED, RETRYING, JobOptions, apply_options, requeue
from .runner import Lane
from .shield import shielded
from .stores import open_store

__all__ = ["Engine"]

log = logging.getLogger("greenpool.jobs")
_SWEEP_INTERVAL = 1.0
_IDS_PER_READ = 256  # job and pile ids drawn from one os.urandom call
_STORE_RETRY_AFTER = 5  # seconds a client is told to wait while the store is full or cannot commit
_DEBUG = logging.DEBUG
_monotonic = time.monotonic


class Engine(Lifecycle, PileMethods):
    """Jobs in, results out: submit, get, wait, cancel, list, piles, resize, stats, drain.

    `store` (default: the configured one, `open_store`), `clock` (wall-clock seconds, default `time.time`)
    and `ids` (new job and pile ids, default 128 random bits as 32 hex digits) are injectable for tests;
    `cluster` (default: the store's, `open_cluster`) is what makes replicas on one Redis one service."""

    def __init__(self, config: Config, registry: Registry, store: Store | None = None,
                 clock: Callable[[], float] = time.time, ids: Iterator[str] | None = None,
                 cluster: Any = None) -> None:  # fmt: skip
        self.config = config
        self.registry = registry
        self.store = store if store is not None else open_store(config)
        self._jobs, self._piles, self._results = self.store.jobs, self.store.piles, self.store.results
        self._clock = clock
        self._ids = ids if ids is not None else _random_ids()
        self._admission = Admission(config, registry)
        self.cluster = cluster if cluster is not None else open_cluster(config, self.store)
        self._notifier = self.cluster.notifier()
        self._held = HeldOutcomes(self._end)  # what lanes ended while the store could not be written
        self._batch = getattr(self.store, "batch", contextlib.nullcontext)  # a shared store: a pile's jobs at once
        self.pools = Pools(config, registry, self.store, self._new_lane)
        self.runner = self.pools.runner
        self._lane = self.pools.default  # the default pool's lane
        self._lanes = self.runner.lanes
        self._started_at = _monotonic()
        # Which start of the service this is: a restart shows as a new boot_id (and started_at) to pollers.
        self.boot = {"boot_id": os.urandom(8).hex(), "started_at": rfc3339(time.time())}
        self._history = History()
        self._sweeper = spawn(self._sweep)
        # Observers (service.api.metrics): observer(event, job) on "queued", "running", "retrying" (an attempt
        # ended and the job is queued for its next one) and each terminal status.
        self.observers: list[Callable[[str, Job], None]] = []
        self.cluster.start(self)

    @property
    def draining(self) -> bool:
        """True once `drain` has started: nothing new is accepted."""
        return self._admission.draining

    def threads(self) -> list[Any]:
        """The engine's own green threads (dispatchers and the sweeper), for a test to stop it."""
        return [*self.runner.threads(), self._sweeper, *self.cluster.threads()]

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
    @shielded
    def submit(self, task: str, args: dict, timeout: float | None = None, owner: str | None = None,
               job_id: str | None = None, client: str | None = None, pool: str | None = None,
               options: JobOptions | None = None) -> Job:  # fmt: skip
        """Validate and enqueue one job in `pool` (None: its task's, else `default`); UnknownPool, Draining,
        TooLarge, QueueFull, StoreUnavailable, UnknownTask or InvalidArguments. `client` (None: none) is whose
        share of the pool's queue the job takes (`max_queued_per_client`); `options` its retry policy and
        delay (None: the task's defaults)."""
        lane = self.pools.lane_for(pool, task)
        admission = self._admission
        admission.check(lane, 1, client)
        self._writable()
        args = admission.validate(task, args)
        admission.reserve(lane, 1, client)
        with self._batch():  # a shared store: the record and its push in one round trip
            return self._enqueue(lane, task, args, timeout, None, owner, job_id, client, options)

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFound if unknown or already evicted."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def wait(self, job: Job, timeout: float) -> bool:
        """Park until `job` ends or `timeout` seconds pass; True if it has ended."""
        deadline = _monotonic() + timeout
        while job.status not in TERMINAL and timeout > 0:
            self._notifier.job_event(job.id).wait(timeout)  # in cluster mode also woken to re-read the record
            if job.status not in TERMINAL:
                self._jobs.get(job.id)  # a shared store's read refreshes the record in place
            timeout = deadline - _monotonic()
        return job.status in TERMINAL

    def list(
        self, status: str | None = None, limit: int = 100, before: int | None = None, owner: str | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest-first jobs (optionally of one status, or one owner) older than cursor `before`; the next cursor."""
        found = self._jobs.select(status, owner, before, limit + 1)
        if len(found) > limit:
            return found[:limit], found[limit - 1].seq
        return found, None

    @shielded
    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job never starts, a running one is killed. JobAlreadyEnded if it has ended."""
        job = self.get(job_id)
        if not self._end(job, CANCELLED, "Cancelled", "cancelled on request"):
            raise JobAlreadyEnded(job_id, job.status)
        return job

    # -- the pools ------------------------------------------------------------------------------
    def resize(self, size: int, pool: str = DEFAULT_POOL) -> bool:
        """Create `pool` with `size` slots or change how many of its jobs may run at once (0 pauses it;
        running jobs continue; growing starts queued jobs at once); True if it was created."""
        created = self.pools.put(pool, size)
        self.cluster.resized(pool, size)
        return created

    def delete_pool(self, pool: str) -> None:
        """Delete an idle pool; PoolNotFound, or PoolInUse for `default` or one with jobs queued or running."""
        self.pools.delete(pool, self.cluster.running)
        self.cluster.deleted(pool)
        self._history.forget(pool)

    def stats(self, pool: str = DEFAULT_POOL) -> dict[str, Any]:
        """The counters `/v1/pool` reports, of one pool (PoolNotFound if there is none)."""
        lane = self.pools.lane(pool)
        stats: dict[str, Any] = lane.stats()
        stats.update(lane.counts)
        stats["uptime_s"] = round(_monotonic() - self._started_at, 3)
        stats.update(self.boot)
        return stats

    def report(self, pool: str = DEFAULT_POOL) -> dict[str, Any]:
        """What `/v1/pool(s)` reports of one pool: `stats`, cluster-wide in cluster mode (plus `replicas`)."""
        return self.cluster.report(pool, self.stats(pool))

    def history(self, pool: str = DEFAULT_POOL) -> dict[str, Any]:
        """A pool's recent gauges, one sample a second (`t`: wall-clock seconds), and the time now
        (PoolNotFound if there is no such pool)."""
        self.pools.lane(pool)
        return {"interval_s": _SWEEP_INTERVAL, "now": round(self._clock(), 3), "samples": self._history.samples(pool)}

    def pool_names(self) -> list[str]:
        """Every pool's name: `default` first, then the others by name."""
        return [DEFAULT_POOL, *sorted(name for name in self._lanes if name != DEFAULT_POOL)]

    # -- internals ------------------------------------------------------------------------------
    def _new_lane(self, name: str, size: int, threads: Any) -> Lane:
        """A lane serving pool `name` from its queue in the store, on the runner's OS threads `threads`."""
        lane = self.cluster.lane_type(name, size, self.store.queue(name), self.registry, self._clock,
                                      self.config.max_result_bytes, self._started, self._held.end, threads)  # fmt: skip
        if getattr(lane.queue, "wake", False) is None:  # a shared store's queue: a refresh that finds jobs pushed
            lane.queue.wake = lane.pushed  # by other replicas wakes this dispatcher (a ClusterLane has its own)
        return lane

    def _admit(self, specs: list[JobSpec], client: str | None) -> tuple[list[Lane], list[JobSpec]]:
        """Each job's lane and its checked spec, with room taken in every pool (admission's order of checks,
        an unknown pool first): UnknownPool, Draining, TooLarge, QueueFull, StoreUnavailable or InvalidArguments."""
        specs = [JobSpec(*spec) for spec in specs]
        lane_for = self.pools.lane_for
        lanes = [lane_for(spec.pool, spec.task, i) for i, spec in enumerate(specs)]
        groups: dict[Lane, int] = {}
        for lane in lanes:
            groups[lane] = groups.get(lane, 0) + 1
        admission = self._admission
        admission.check_all(groups, client)
        self._writable()
        checked = admission.validate_all(specs)
        admission.reserve_all(groups, client)
        return lanes, checked

    def _writable(self) -> None:
        """StoreUnavailable if the store should take no new work now (it is full, or cannot commit)."""
        reason = self.store.unavailable()
        if reason is not None:
            raise StoreUnavailable(reason, _STORE_RETRY_AFTER)

    def _enqueue(self, lane: Lane, task: str, args: dict, timeout: float | None, pile: Pile | None,
                 owner: str | None, job_id: str | None = None, client: str | None = None,
                 options: JobOptions | None = None) -> Job:  # fmt: skip
        """Store and queue one validated job whose place in the queue (and `client`'s share) is reserved."""
        now = self._clock()
        job = Job(job_id or next(self._ids), task, args, timeout, now, lane.name, pile and pile.id, owner)
        apply_options(job, self.registry.get(task), options, self.config.max_retries, now)
        self._admission.queued(job.id, lane, client)
        self._jobs.add(job)
        if pile is not None:
            self._piles.add_job(pile, job)
        lane.counts["submitted"] += 1
        lane.queue.push(job)
        if job.not_before is None:
            lane.pushed()
        else:
            lane.delayed(job.not_before)
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
        """Put `job` into terminal `status` unless it already ended; kills the job (not its slot) if running.
        An attempt that failed or timed out with attempts left instead sends the job back to the queue."""
        error = None if error_type is None else {"type": error_type, "message": message}
        if status in RETRIED and job.attempt <= job.retries and self._retry(job, status, error, status == TIMED_OUT):
            return True
        was = self._jobs.finish(job, status, result, error, self._clock())
        if was is None:
            return False
        lane = self._lanes[job.pool]
        if was == QUEUED:
            lane.queue.discard(job)
        self._admission.left_queue(job.id)  # if it was still counted as queued (harmless otherwise)
        lane.counts[status] += 1
        lane.ended += 1
        self._notify(status, job)
        self._notifier.job_ended(job.id)
        if log.isEnabledFor(logging.INFO):
            logs.info(log, "job " + status, {"job_id": job.id, "task": job.task, "status": status, "pile": job.pile,
                                             "queue_wait_s": _rounded(job.queue_seconds()),
                                             "run_s": job.run_seconds(), "attempt": job.attempt,
                                             "error_type": error_type})  # fmt: skip
        if job.pile is not None:
            if job.position >= 0:  # the store's finish logged it in its pile already (Redis: one script)
                self._notifier.pile_changed(job.pile)
            elif (pile := self._piles.get(job.pile)) is not None:
                self._results.append(pile, job, job.finished_at)  # type: ignore[arg-type]
                self._notifier.pile_changed(pile.id)
        if was == RUNNING and status in (CANCELLED, TIMED_OUT):
            lane.kill(job.id)
        return True

    def _retry(self, job: Job, status: str, error: dict[str, str] | None, kill: bool = False) -> bool:
        """Queue a running job again for its next attempt after its backoff (`kill`: its green thread too);
        False if it is not running, or the engine drains a store that will not outlive it."""
        if (self.draining and not self.store.durable) or not requeue(
            self._jobs, self._lanes[job.pool], job, status, error, self._clock(), self.config.max_backoff, kill
        ):
            return False
        self._notify(RETRYING, job)
        if log.isEnabledFor(_DEBUG):
            extra = {"job_id": job.id, "task": job.task, "status": status, "attempt": job.attempt}
            log.debug("job retrying", extra={**extra, "not_before": rfc3339(job.not_before)})
        return True

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
        """Once a second: sample each pool's gauges, expire old records, update the finish rate behind
        Retry-After."""
        while True:
            sleep(_SWEEP_INTERVAL)
            self._admission.tick(self.runner, _SWEEP_INTERVAL)
            now = self._clock()
            for lane in self.runner:
                self._history.record(lane.name, now, lane.stats())
            horizon = now - self.config.result_ttl
            try:
                self._held.write()
                self._jobs.expire(horizon)
                self._piles.expire(horizon)
                for pile_id in [p for p in self._notifier.readers if self._piles.get(p) is None]:
                    self._notifier.pile_changed(pile_id)  # its streams end
            except StoreError:  # the store is down for now (503s say so): expire at a later sweep
                continue


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


def _random_ids() -> Iterator[str]:
    """Unpredictable 128-bit ids as 32 hex digits, as `os.urandom(16).hex()` but one system call per 256."""
    while True:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        for start in range(0, len(block), 32):
            yield block[start : start + 32]

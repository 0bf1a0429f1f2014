"""The job engine: the only owner of the GreenPool.

Accepted jobs enter a bounded FIFO queue. A pool green thread is a *slot*: it takes the job at the head of
the queue, runs it, and takes the next one in the same green thread while jobs are queued and the pool is
not over its size, so the pool's size is the number of jobs running at once and job throughput does not
depend on how long a hub pass is (a green thread made ready runs only in the next pass: with one spawn
per job, each slot would run one job per two passes). One dispatcher green thread spawns a slot for each
queued job no slot is on its way to, while the pool has room. A slot that has run jobs back to back for
`_TURN` seconds yields to the other green threads (connections) before it takes the next.

Each accepted job reaches exactly one terminal state through `Job.finish`, whoever gets there first (the
job itself, a cancel, its timeout, or a drain); a cancel or timeout kills the job, not its slot, which goes
on with the next queued job. Finished records are kept for `result_ttl` seconds and at most
`max_records`, oldest evicted first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pool_core import GreenletExit, GreenPool, GreenThread, Timeout, get_hub, getcurrent, sleep, spawn
from pool_core.waitqueue import WaitQueue

from ..api.errors import (
    Draining,
    JobAlreadyEnded,
    JobNotFound,
    PayloadTooLarge,
    PileClosed,
    PileNotFound,
    QueueFull,
    UnknownTaskProblem,
    ValidationFailed,
)
from ..config import Config
from ..tasks import InvalidArguments, Registry, UnknownTask
from .jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, TIMED_OUT, Job
from .piles import Pile

__all__ = ["Engine"]

log = logging.getLogger("greenpool.jobs")
_SWEEP_INTERVAL = 1.0
_MAX_ERRORS_SHOWN = 50
_TURN = 0.002  # seconds a slot may run jobs back to back before it lets the other green threads run
_IDS_PER_READ = 256  # job and pile ids drawn from one os.urandom call
_monotonic = time.monotonic
JobSpec = tuple[str, Any, float | None]  # (task, args, timeout)


class Engine:
    """Jobs in, results out: submit, wait, cancel, list, resize, stats, drain."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.pool = GreenPool(config.pool_size)
        self.draining = False
        self._queue: deque[Job] = deque()  # FIFO; a job cancelled while queued stays until a slot skips it
        self._queued = 0  # jobs in the queue still QUEUED
        self._starting = 0  # slots spawned that have not yet taken their first job
        self._dispatcher = WaitQueue()  # the dispatcher, parked until it has a slot to spawn
        self._pool_full = False  # the dispatcher is parked because every slot is taken (`waiting`)
        self._ids = _random_ids()
        self._jobs: dict[str, Job] = {}
        self._finished: deque[Job] = deque()
        self._piles: dict[str, Pile] = {}
        self._seq = 0
        self._counts = {"submitted": 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self._started = time.monotonic()
        self._finish_rate = 0.0  # jobs/s, smoothed; feeds Retry-After
        self._finished_since_sweep = 0
        self._threads = [spawn(self._dispatch), spawn(self._sweep)]
        # Observers (service.metrics): observer(event, job) on "queued", "running" and each terminal status.
        self.observers: list[Callable[[str, Job], None]] = []

    # -- submitting and reading jobs ------------------------------------------------------------
    def submit(self, task: str, args: dict, timeout: float | None = None, owner: str | None = None) -> Job:
        """Validate and enqueue a job; raises Draining, QueueFull, UnknownTaskProblem or ValidationFailed."""
        self._admit(1)
        return self._enqueue(task, self.validate(task, args), timeout, None, owner)

    def validate(self, task: str, args: Any, field: str = "") -> dict:
        """The task's normalised arguments, or a 422 problem naming the field (prefixed with `field`)."""
        try:
            spec = self.registry.get(task)
        except UnknownTask:
            known = ", ".join(t["name"] for t in self.registry.describe())
            raise UnknownTaskProblem(
                f"no task named {task!r} is registered (known: {known})",
                errors=[{"field": _join(field, "task"), "message": f"unknown task {task!r}"}],
            ) from None
        try:
            return spec.validate(args)
        except InvalidArguments as exc:
            errors = [{"field": _join(_join(field, "args"), e["field"]), "message": e["message"]} for e in exc.errors]
            fields = ", ".join(e["field"] for e in errors)
            raise ValidationFailed(f"invalid arguments for task {task!r}: {fields}", errors) from None

    def _admit(self, count: int) -> None:
        if self.draining:
            raise Draining()
        if count > self.config.max_queued:  # could never be accepted: not a matter of retrying later
            raise PayloadTooLarge(
                f"{count} jobs in one request; the queue holds at most {self.config.max_queued}",
                limit=self.config.max_queued,
            )
        if self._queued + count > self.config.max_queued:
            raise QueueFull(
                f"{self._queued} jobs are queued and {count} more would pass the limit of "
                f"{self.config.max_queued}; retry later",
                retry_after=self.retry_after(count),
            )

    def _enqueue(self, task: str, args: dict, timeout: float | None, pile: Pile | None, owner: str | None) -> Job:
        self._seq += 1
        job = Job(next(self._ids), self._seq, task, args, timeout, pile and pile.id, owner)
        self._jobs[job.id] = job
        if pile is not None:
            pile.add(job)
        self._queued += 1
        self._counts["submitted"] += 1
        self._queue.append(job)
        if not self._pool_full:
            self._dispatcher.wake_one()
        self._notify(QUEUED, job)
        if log.isEnabledFor(logging.INFO):
            log.info("job queued", extra={"job_id": job.id, "task": task, "status": QUEUED, "pile": job.pile})
        return job

    # -- piles ----------------------------------------------------------------------------------
    def create_pile(
        self, specs: list[JobSpec], fields: list[str], open: bool = False, owner: str | None = None
    ) -> Pile:
        """A new pile of jobs (all accepted or none); closed unless `open`. `fields` name each spec in errors."""
        self._admit(len(specs))
        checked = self._validate_all(specs, fields)
        pile = Pile(next(self._ids), owner)
        self._piles[pile.id] = pile
        for task, args, timeout in checked:
            self._enqueue(task, args, timeout, pile, owner)
        if not open:
            pile.close()
        log.info("pile created", extra={"pile": pile.id, "size": len(specs), "open": open})
        return pile

    def add_to_pile(self, pile_id: str, specs: list[JobSpec], fields: list[str]) -> list[Job]:
        """Append jobs to an open pile (all or none); PileClosed if it is closed."""
        pile = self.get_pile(pile_id)
        if self.draining:
            raise Draining()
        if pile.closed:
            raise PileClosed(f'pile {pile_id} is closed; create a new pile or open one with "open": true')
        limit = self.config.max_pile_size
        if len(pile.jobs) + len(specs) > limit:
            raise PayloadTooLarge(
                f"pile {pile_id} has {len(pile.jobs)} jobs; {len(specs)} more would pass the limit of {limit} per pile",
                limit=limit,
            )
        self._admit(len(specs))
        checked = self._validate_all(specs, fields)
        return [self._enqueue(task, args, timeout, pile, pile.owner) for task, args, timeout in checked]

    def close_pile(self, pile_id: str) -> Pile:
        """Close a pile: its streams end once every job it has has ended (closing twice is harmless)."""
        pile = self.get_pile(pile_id)
        pile.close()
        return pile

    def get_pile(self, pile_id: str) -> Pile:
        """The pile with this id; PileNotFound if unknown or expired."""
        pile = self._piles.get(pile_id)
        if pile is None:
            raise PileNotFound(f"no pile with id {pile_id!r} (unknown, or its records have expired)")
        return pile

    def _validate_all(self, specs: list[JobSpec], fields: list[str]) -> list[JobSpec]:
        checked, errors = [], []
        for (task, args, timeout), field in zip(specs, fields, strict=True):
            try:
                checked.append((task, self.validate(task, args, field), timeout))
            except ValidationFailed as exc:
                errors.extend(exc.extra["errors"])
        if errors:
            shown = errors[:_MAX_ERRORS_SHOWN]
            raise ValidationFailed(f"{len(errors)} invalid job(s): " + ", ".join(e["field"] for e in shown[:5]), shown)
        return checked

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFound if unknown or already evicted."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r} (unknown, or its record has expired)")
        return job

    def list(
        self, status: str | None = None, limit: int = 100, before: int | None = None, owner: str | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest-first jobs (optionally of one status, or one owner) older than cursor `before`; the next cursor."""
        found: list[Job] = []
        for job in reversed(self._jobs.values()):
            if before is not None and job.seq >= before:
                continue
            if status is not None and job.status != status:
                continue
            if owner is not None and job.owner != owner:
                continue
            if len(found) == limit:
                return found, found[-1].seq
            found.append(job)
        return found, None

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job never starts, a running one is killed. JobAlreadyEnded if it has ended."""
        job = self.get(job_id)
        if not self._end(job, CANCELLED, "Cancelled", "cancelled on request"):
            raise JobAlreadyEnded(f"job {job_id} already ended with status {job.status!r}", job_status=job.status)
        return job

    # -- the pool -------------------------------------------------------------------------------
    def resize(self, size: int) -> None:
        """Change how many jobs may run at once (running jobs continue; see GreenPool.resize)."""
        self.pool.resize(size)
        self._dispatcher.wake_one()  # growing may let it spawn slots for queued jobs

    def stats(self) -> dict[str, Any]:
        """The counters `/v1/pool` reports."""
        pool = self.pool
        return {
            "size": pool.size,
            "running": pool.running(),
            "free": pool.free(),
            "waiting": pool.waiting() + (1 if self._pool_full else 0),  # the dispatcher, waiting for a slot
            "queued": self._queued,
            **self._counts,
            "uptime_s": round(time.monotonic() - self._started, 3),
        }

    def retry_after(self, count: int = 1) -> int:
        """Seconds until the queue has likely drained enough to accept `count` jobs (1..60)."""
        rate = max(self._finish_rate, 1e-3)
        return int(min(60, max(1, math.ceil((self._queued + count - self.config.max_queued) / rate))))

    # -- shutdown -------------------------------------------------------------------------------
    def drain(self, grace: float) -> None:
        """Stop accepting, cancel queued jobs, let running ones finish for `grace` s, then cancel the rest."""
        self.draining = True
        log.info("draining", extra={"grace_s": grace, "running": self.pool.running(), "queued": self._queued})
        for job in [j for j in self._jobs.values() if j.status == QUEUED]:
            self._end(job, CANCELLED, "Cancelled", "the server shut down before the job started")
        for pile in self._piles.values():  # no more jobs can come: let their streams end with the last result
            pile.close()
        try:
            with Timeout(grace, False):
                self.pool.waitall()
        finally:  # also when the worker's grace period ends first and kills this green thread
            for job in [j for j in self._jobs.values() if j.status == RUNNING]:
                self._end(job, CANCELLED, "Cancelled", "the server shut down before the job ended")
            log.info("drained", extra={**self._counts})

    # -- internals ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Spawn a slot for each queued job that no slot is on its way to, while the pool has room."""
        pool, parked = self.pool, self._dispatcher
        while True:
            if self._queued <= self._starting:
                parked.park()  # woken by a submission
            elif pool.running() >= pool.size:
                self._pool_full = True
                try:
                    parked.park()  # woken by a slot leaving the pool, or a resize
                finally:
                    self._pool_full = False
            else:
                pool.spawn(self._slot)
                self._starting += 1

    def _slot(self) -> None:
        """One pool slot: run queued jobs back to back, in FIFO order, while more are queued than slots on
        their way to them and the pool is not over its size; yield after `_TURN` s of instant jobs."""
        self._starting -= 1
        hub, pool, queue = get_hub(), self.pool, self._queue
        thread = getcurrent()
        turn, turn_started = hub.pass_started, _monotonic()
        try:
            while queue:
                job = queue.popleft()
                if job.status is not QUEUED:  # cancelled while it waited
                    continue
                self._run(job, thread)
                if hub.pass_started != turn:  # the job parked: this slot's turn began when it resumed
                    turn, turn_started = hub.pass_started, _monotonic()
                elif _monotonic() - turn_started > _TURN:
                    hub.yield_now()
                    turn, turn_started = hub.pass_started, _monotonic()
                if self._queued <= self._starting or pool.free() < 0:
                    return
        finally:  # leaving frees a slot: the dispatcher may be waiting for one, or have jobs with no slot
            if self._pool_full or self._queued > self._starting:
                self._dispatcher.wake_one()

    def _run(self, job: Job, thread: GreenThread) -> None:
        """Run one queued job in the calling slot (`thread`) to its terminal state."""
        self._queued -= 1
        waited = job.start()
        job.thread = thread
        self._notify(RUNNING, job)
        if log.isEnabledFor(logging.INFO):
            log.info("job running", extra={"job_id": job.id, "task": job.task, "status": RUNNING,
                                           "queue_wait_s": round(waited, 6)})  # fmt: skip
        timer = None
        if job.timeout is not None:
            timer = get_hub().call_later(job.timeout, self._expire, job)
        try:
            result = self.registry.get(job.task).run(job.args)
            size = len(json.dumps(result))  # ASCII (ensure_ascii): characters are bytes
        except GreenletExit:
            if job.status in TERMINAL:
                return  # killed by its cancel, timeout or the drain, which ended it: the slot goes on
            raise  # a kill meant for the slot itself
        except Exception as exc:  # the task failed: that is the job's outcome, not the server's
            self._end(job, FAILED, type(exc).__name__, str(exc) or repr(exc))
            return
        finally:
            if timer is not None:
                timer.cancel()
        if size > self.config.max_result_bytes:
            limit = self.config.max_result_bytes
            self._end(job, FAILED, "ResultTooLarge", f"the result is {size} bytes as JSON; the limit is {limit}")
            return
        self._end(job, SUCCEEDED, result=result)

    def _expire(self, job: Job) -> None:
        self._end(job, TIMED_OUT, "Timeout", f"the job ran longer than its timeout of {job.timeout} s")

    def _end(self, job: Job, status: str, error_type: str | None = None, message: str | None = None,
             result: Any = None) -> bool:  # fmt: skip
        """Put `job` into terminal `status` unless it already ended; kills the job (not its slot) if running."""
        was_queued, thread = job.status is QUEUED, job.thread
        error = None if error_type is None else {"type": error_type, "message": message}
        if not job.finish(status, result, error):
            return False
        if was_queued:
            self._queued -= 1
        self._counts[status] += 1
        self._notify(status, job)
        self._finished.append(job)
        self._finished_since_sweep += 1
        self._evict(max_only=True)
        if log.isEnabledFor(logging.INFO):
            log.info("job " + status, extra={"job_id": job.id, "task": job.task, "status": status,
                                             "run_s": job.run_seconds(), "pile": job.pile,
                                             "error_type": error_type})  # fmt: skip
        if job.pile is not None:
            pile = self._piles.get(job.pile)
            if pile is not None:
                pile.job_ended(job)
        if thread is not None and status in (CANCELLED, TIMED_OUT):
            thread.kill()
        return True

    def _notify(self, event: str, job: Job) -> None:
        """Tell the observers about a state change; one failing never disturbs the job or the others."""
        for observer in self.observers:
            try:
                observer(event, job)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)

    def _evict(self, max_only: bool = False) -> None:
        finished, jobs = self._finished, self._jobs
        while len(finished) > self.config.max_records:
            jobs.pop(finished.popleft().id, None)
        if max_only:
            return
        horizon = time.time() - self.config.result_ttl
        while finished and finished[0].finished_at <= horizon:
            jobs.pop(finished.popleft().id, None)
        expired = [p.id for p in self._piles.values() if p.finished_at is not None and p.finished_at <= horizon]
        for pile_id in expired:
            del self._piles[pile_id]

    def _sweep(self) -> None:
        """Once a second: expire old records and update the finish rate behind Retry-After."""
        while True:
            sleep(_SWEEP_INTERVAL)
            self._finish_rate = 0.7 * self._finish_rate + 0.3 * (self._finished_since_sweep / _SWEEP_INTERVAL)
            self._finished_since_sweep = 0
            self._evict()


def _random_ids() -> Iterator[str]:
    """Unpredictable 128-bit ids as 32 hex digits, as `os.urandom(16).hex()` but one system call per 256."""
    while True:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        for start in range(0, len(block), 32):
            yield block[start : start + 32]


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    return f"{prefix}.{field}" if field else prefix

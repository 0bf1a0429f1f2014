"""The job engine: the only owner of the GreenPool.

Accepted jobs enter a bounded FIFO queue; one dispatcher green thread moves them into the pool, so the
pool's size is the number of jobs running at once. Each accepted job reaches exactly one terminal state
through `Job.finish`, whoever gets there first (the job itself, a cancel, its timeout, or a drain).
Finished records are kept for `result_ttl` seconds and at most `max_records`, oldest evicted first.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import deque
from typing import Any

from pool_core import GreenletExit, GreenPool, LightQueue, Timeout, get_hub, sleep, spawn

from .config import Config
from .errors import (
    Draining,
    JobAlreadyEnded,
    JobNotFound,
    QueueFull,
    UnknownTaskProblem,
    ValidationFailed,
)
from .jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, TIMED_OUT, Job
from .tasks import InvalidArguments, Registry, UnknownTask

__all__ = ["Engine"]

log = logging.getLogger("greenpool.jobs")
_SWEEP_INTERVAL = 1.0


class Engine:
    """Jobs in, results out: submit, wait, cancel, list, resize, stats, drain."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.pool = GreenPool(config.pool_size)
        self.draining = False
        self._queue: LightQueue = LightQueue()
        self._queued = 0
        self._jobs: dict[str, Job] = {}
        self._finished: deque[Job] = deque()
        self._seq = 0
        self._counts = {"submitted": 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self._started = time.monotonic()
        self._finish_rate = 0.0  # jobs/s, smoothed; feeds Retry-After
        self._finished_since_sweep = 0
        self._threads = [spawn(self._dispatch), spawn(self._sweep)]

    # -- submitting and reading jobs ------------------------------------------------------------
    def submit(self, task: str, args: dict, timeout: float | None = None, pile: str | None = None,
               owner: str | None = None) -> Job:  # fmt: skip
        """Validate and enqueue a job; raises Draining, UnknownTaskProblem, ValidationFailed, QueueFull."""
        if self.draining:
            raise Draining()
        args = self.validate(task, args)
        if self._queued >= self.config.max_queued:
            raise QueueFull(
                f"{self._queued} jobs are queued (the limit is {self.config.max_queued}); retry later",
                retry_after=self.retry_after(),
            )
        self._seq += 1
        job = Job(uuid.uuid4().hex, self._seq, task, args, timeout, pile, owner)
        self._jobs[job.id] = job
        self._queued += 1
        self._counts["submitted"] += 1
        self._queue.put(job)
        log.info("job queued", extra={"job_id": job.id, "task": task, "status": QUEUED, "pile": pile})
        return job

    def validate(self, task: str, args: Any) -> dict:
        """The task's normalised arguments, or a 422 problem naming the field."""
        try:
            spec = self.registry.get(task)
        except UnknownTask:
            known = ", ".join(t["name"] for t in self.registry.describe())
            raise UnknownTaskProblem(
                f"no task named {task!r} is registered (known: {known})",
                errors=[{"field": "task", "message": f"unknown task {task!r}"}],
            ) from None
        try:
            return spec.validate(args)
        except InvalidArguments as exc:
            errors = [{"field": _args_field(e["field"]), "message": e["message"]} for e in exc.errors]
            fields = ", ".join(e["field"] for e in errors)
            raise ValidationFailed(f"invalid arguments for task {task!r}: {fields}", errors) from None

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFound if unknown or already evicted."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r} (unknown, or its record has expired)")
        return job

    def list(
        self, status: str | None = None, limit: int = 100, before: int | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest-first jobs (optionally of one status) older than cursor `before`; and the next cursor."""
        found: list[Job] = []
        for job in reversed(self._jobs.values()):
            if before is not None and job.seq >= before:
                continue
            if status is not None and job.status != status:
                continue
            if len(found) == limit:
                return found, found[-1].seq
            found.append(job)
        return found, None

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job never starts, a running one is killed. JobAlreadyEnded if it has ended."""
        job = self.get(job_id)
        if not self._end(job, CANCELLED, "Cancelled", "cancelled on request"):
            raise JobAlreadyEnded(f"job {job_id} already ended with status {job.status!r}", status=job.status)
        return job

    # -- the pool -------------------------------------------------------------------------------
    def resize(self, size: int) -> None:
        """Change how many jobs may run at once (running jobs continue; see GreenPool.resize)."""
        self.pool.resize(size)

    def stats(self) -> dict[str, Any]:
        """The counters `/v1/pool` reports."""
        pool = self.pool
        return {
            "size": pool.size,
            "running": pool.running(),
            "free": pool.free(),
            "waiting": pool.waiting(),
            "queued": self._queued,
            **self._counts,
            "uptime_s": round(time.monotonic() - self._started, 3),
        }

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained enough to accept a job again (1..60)."""
        rate = max(self._finish_rate, 1e-3)
        return int(min(60, max(1, math.ceil((self._queued - self.config.max_queued + 1) / rate))))

    # -- shutdown -------------------------------------------------------------------------------
    def drain(self, grace: float) -> None:
        """Stop accepting, cancel queued jobs, let running ones finish for `grace` s, then cancel the rest."""
        self.draining = True
        log.info("draining", extra={"grace_s": grace, "running": self.pool.running(), "queued": self._queued})
        for job in [j for j in self._jobs.values() if j.status == QUEUED]:
            self._end(job, CANCELLED, "Cancelled", "the server shut down before the job started")
        with Timeout(grace, False):
            self.pool.waitall()
        for job in [j for j in self._jobs.values() if j.status == RUNNING]:
            self._end(job, CANCELLED, "Cancelled", "the server shut down before the job ended")
        log.info("drained", extra={**self._counts})

    # -- internals ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        queue, pool = self._queue, self.pool
        while True:
            job = queue.get()
            if job.status is QUEUED:
                job.thread = pool.spawn(self._run, job)

    def _run(self, job: Job) -> None:
        if job.status is not QUEUED:  # cancelled while it waited
            return
        self._queued -= 1
        waited = job.start()
        log.info("job running", extra={"job_id": job.id, "task": job.task, "status": RUNNING,
                                       "queue_wait_s": round(waited, 6)})  # fmt: skip
        timer = None
        if job.timeout is not None:
            timer = get_hub().call_later(job.timeout, self._expire, job)
        try:
            result = self.registry.get(job.task).run(job.args)
            json.dumps(result)
        except GreenletExit:
            return  # killed: whoever killed it has already ended the job
        except Exception as exc:  # the task failed: that is the job's outcome, not the server's
            self._end(job, FAILED, type(exc).__name__, str(exc) or repr(exc))
            return
        finally:
            if timer is not None:
                timer.cancel()
        self._end(job, SUCCEEDED, result=result)

    def _expire(self, job: Job) -> None:
        self._end(job, TIMED_OUT, "Timeout", f"the job ran longer than its timeout of {job.timeout} s")

    def _end(self, job: Job, status: str, error_type: str | None = None, message: str | None = None,
             result: Any = None) -> bool:  # fmt: skip
        """Put `job` into terminal `status` unless it already ended; kills its green thread if running."""
        was_queued, thread = job.status is QUEUED, job.thread
        error = None if error_type is None else {"type": error_type, "message": message}
        if not job.finish(status, result, error):
            return False
        if was_queued:
            self._queued -= 1
        self._counts[status] += 1
        self._finished.append(job)
        self._finished_since_sweep += 1
        self._evict(max_only=True)
        log.info("job " + status, extra={"job_id": job.id, "task": job.task, "status": status,
                                         "run_s": job.run_seconds(), "pile": job.pile,
                                         "error_type": error_type})  # fmt: skip
        if thread is not None and status in (CANCELLED, TIMED_OUT):
            thread.kill()
        return True

    def _evict(self, max_only: bool = False) -> None:
        finished, jobs = self._finished, self._jobs
        while len(finished) > self.config.max_records:
            jobs.pop(finished.popleft().id, None)
        if max_only:
            return
        horizon = time.time() - self.config.result_ttl
        while finished and finished[0].finished_at <= horizon:
            jobs.pop(finished.popleft().id, None)

    def _sweep(self) -> None:
        """Once a second: expire old records and update the finish rate behind Retry-After."""
        while True:
            sleep(_SWEEP_INTERVAL)
            self._finish_rate = 0.7 * self._finish_rate + 0.3 * (self._finished_since_sweep / _SWEEP_INTERVAL)
            self._finished_since_sweep = 0
            self._evict()


def _args_field(field: str) -> str:
    return "args" if not field else f"args.{field}"

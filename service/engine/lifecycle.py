"""Start and stop with a store: recovering what a durable store reloaded, and draining at shutdown (design §7)."""

from __future__ import annotations

import logging
from typing import Any

from pool_core import Timeout

from ..storage import Job
from ..storage.records import CANCELLED, FAILED, QUEUED, RUNNING

__all__ = ["Lifecycle"]

log = logging.getLogger("greenpool.jobs")


class Lifecycle:
    """The engine's `recover` and `drain` (a mixin of `Engine`, whose state and transitions they use)."""

    store: Any
    _jobs: Any
    _piles: Any
    _lane: Any
    _lanes: Any
    _admission: Any
    runner: Any
    pools: Any
    _end: Any  # the transitions are the engine's own
    _retry: Any
    _notify: Any
    _close: Any
    cluster: Any  # in cluster mode, jobs other replicas run are not lost (service.engine.replicas)

    def recover(self) -> None:
        """After a restart on a durable store (call it once, with the observers attached, so that metrics
        count what it does): every job the store reloaded unfinished counts as submitted to this process
        (an observer sees it `queued`); an attempt that was running when the process died (in cluster mode:
        one that no live replica runs, `cluster.lost`) ends `WorkerLost` (design §7), or is retried if the
        job has retries left; the queued jobs run again, in order, as the lanes' dispatchers find them (a
        delayed one once it is due)."""
        lost, queued = self.cluster.lost(self._jobs.select(RUNNING)), self._jobs.select(QUEUED)
        self.pools.adopt(queued + lost)  # every reloaded job's pool has a lane
        for job in reversed(queued):
            self._resubmitted(job)
        for job in reversed(lost):
            self._resubmitted(job)
            self._end(job, FAILED, "WorkerLost", "the server process died while the job was running")
        recovered = getattr(self.store, "recovered", None)
        if recovered is not None:
            log.info("store recovered", extra={**recovered, "worker_lost": len(lost)})

    def _resubmitted(self, job: Job) -> None:
        self._lanes[job.pool].counts["submitted"] += 1
        self._notify(QUEUED, job)

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
            totals = {key: sum(lane.counts[key] for lane in self.runner) for key in self._lane.counts}
            log.info("drained", extra={**totals, "kept_queued": sum(lane.stats()["queued"] for lane in self.runner)})

    def _interrupted(self, job: Job) -> None:
        """End a job still running when the drain's grace period is over; with a durable store, one with
        retries left goes back to the queue for the next start instead (design §7)."""
        error = {"type": "Interrupted", "message": "the server shut down before the attempt ended"}
        if not (self.store.durable and job.attempt <= job.retries and self._retry(job, FAILED, error, kill=True)):
            self._end(job, CANCELLED, "Cancelled", "the server shut down before the job ended")

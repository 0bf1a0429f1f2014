"""The cluster seam (design §8): what makes several replicas on one Redis behave as one service.

The engine has one `cluster` collaborator. `LocalCluster` (memory and SQLite stores) is one process as
before: plain lanes, the plain notifier, nothing added on the hot path. In cluster mode
(`service.engine.replicas.RedisCluster`) the lanes are `ClusterLane`s: a slot takes a queued job only with
a lease on one of the pool's cluster-wide slots, and the notifier also tells the other replicas (hints
over pub/sub, the store being the truth) when a job ends or a pile changes.
"""

from __future__ import annotations

from typing import Any, Protocol

from pool_core import getcurrent, spawn

from ..storage import Job
from .notifier import Notifier
from .runner import Lane

__all__ = ["ROOM_POLL_S", "ClusterLane", "ClusterNotifier", "LocalCluster", "Slots"]

ROOM_POLL_S = 0.5  # a lane whose pool is full cluster-wide asks again this often, hint or no hint
RECHECK_S = 1.0  # an idle dispatcher looks at its (shared) queue again this often, hint or no hint


class LocalCluster:
    """One replica on its own store: today's lanes and notifier; every hook is a no-op."""

    replica: str | None = None  # no replica id outside cluster mode
    lane_type: Any = Lane

    def notifier(self) -> Notifier:
        return Notifier()

    def start(self, engine: Any) -> None:
        """Nothing to run beside the engine."""

    def lost(self, running: list[Job]) -> list[Job]:
        """Of the jobs the store has running at start, those whose process died: all of them, here."""
        return running

    def here(self, running: list[Job]) -> list[Job]:
        """Of jobs the store has running, those this process runs: all of them, here."""
        return running

    def leave(self) -> None:
        """The process has drained: nothing to tell anyone."""

    def resized(self, pool: str, size: int) -> None:
        """A pool was created or resized here."""

    def deleted(self, pool: str) -> None:
        """A pool was deleted here."""

    def running(self, pool: str) -> int:
        """Jobs of `pool` running on other replicas too (none: there are none)."""
        return 0

    def report(self, pool: str, stats: dict[str, Any]) -> dict[str, Any]:
        """A pool's figures for `/v1/pool(s)`: this process's."""
        return stats

    def threads(self) -> list[Any]:
        return []


class Slots(Protocol):
    """What a ClusterLane asks of the cluster: leases on the pool's cluster-wide slots, and hints."""

    def token(self) -> str: ...  # a new lease token, unique across the cluster and restarts

    def take(self, pool: str, token: str, queue: Any, at: float) -> tuple[Job | None, bool]: ...
    # the next job with the lease `token` (kept if the size allows; a new token is granted one if fewer than
    # the size are held): (job, True); (None, True) none queued (the lease released); (None, False) not held

    def release(self, pool: str, token: str) -> None: ...  # the attempt ended: free its slot (once)

    def hint(self, kind: str, value: Any) -> None: ...  # tell the other replicas (batched, best effort)


class ClusterNotifier(Notifier):
    """The notifier whose wake-ups also reach the other replicas (`hint`); theirs arrive as `woke_job`
    and `woke_pile`, which wake only this replica's waiters."""

    def __init__(self, hint: Any) -> None:
        super().__init__()
        self._hint = hint

    def job_ended(self, job_id: str) -> None:
        super().job_ended(job_id)
        self._hint("ended", job_id)

    def pile_changed(self, pile_id: str) -> None:
        super().pile_changed(pile_id)
        self._hint("piles", pile_id)

    def woke_job(self, job_id: str) -> None:
        """Another replica ended this job: wake its waiters here (they re-read the record)."""
        Notifier.job_ended(self, job_id)

    def woke_pile(self, pile_id: str) -> None:
        """Another replica changed this pile: wake its streams here (they re-read its log)."""
        Notifier.pile_changed(self, pile_id)

    def recheck(self) -> None:
        """Wake every waiter and stream of this replica to re-read the store (a hint may have been missed)."""
        for job_id in list(self._jobs):
            Notifier.job_ended(self, job_id)
        for pile_id in list(self._piles):
            Notifier.pile_changed(self, pile_id)


class ClusterLane(Lane):
    """A lane whose pool's size is cluster-wide: a slot's first take is granted a lease with its job (one
    script: the slots the dispatcher spawns in one pass share one round trip), or finds the pool full
    cluster-wide, and the dispatcher then spawns one slot at a time (a probe) after ROOM_POLL_S or a hint
    that a slot was freed, until a probe gets a lease. Each job a slot takes is bound to its lease; the slot
    keeps the lease for its next job while no more than the size are held (else it takes a new one, or
    stops) and releases it once, when it leaves. The local GreenPool follows the cluster-wide size (the
    most this replica could run)."""

    def __init__(self, *args: Any, cluster: Slots) -> None:
        self._cluster = cluster
        self._tokens: dict[str, str] = {}  # job id → its lease token, from take to run
        self._carried: dict[Any, str] = {}  # slot → the lease of its last job, until its next take or its end
        self._ending: dict[Any, str] = {}  # slot → the lease of the job it runs, until it ends it
        self._ahead: dict[Any, tuple[Any, str]] = {}  # slot → (the green thread taking its next job, lease)
        self.attempts: dict[str, int] = {}  # job id → the attempt running here
        self._hinted = False  # another replica pushed onto the (shared) queue since the dispatcher looked
        self._dry = False  # a take found nothing although `queued` said so (places reserved, not yet pushed)
        self._full = False  # a slot's new lease was refused: the pool is full cluster-wide (or Redis is down)
        self._probing = False  # since then: one slot at a time, until one is granted a lease
        super().__init__(*args)
        self._end_job, self._end = self._end, self._end_and_take
        if hasattr(self.queue, "wake"):  # a shared store's queue: a refresh that finds more jobs wakes us
            self.queue.wake = self.hinted

    def stats(self) -> dict[str, int]:
        """As Lane's, but `running` (and `free`) count the jobs running here, not the slots: a slot on its
        way to a lease (one the cluster may refuse) runs nothing."""
        stats = super().stats()
        stats["running"] = running = len(self.running) + self.held
        stats["free"] = stats["size"] - running
        return stats

    def pushed(self) -> None:
        super().pushed()
        self._cluster.hint("pushed", self.name)

    def hinted(self) -> None:
        """A job may have been pushed onto the shared queue by another replica: look at it."""
        self._hinted = True
        if not self._pool_full:
            self._dispatcher.wake_one()

    def room(self) -> None:
        """A slot was freed somewhere in the cluster: a dispatcher waiting for one asks again."""
        if self._pool_full:
            self._dispatcher.wake_one()

    def kill(self, job_id: str) -> bool:
        """Kill the job here if it runs here; else ask the replica running it to (it has been ended)."""
        attempt = self.attempts.get(job_id)
        if super().kill(job_id):
            return True
        self._cluster.hint("kill", (job_id, attempt))
        return False

    def kill_here(self, job_id: str, attempt: int | None) -> bool:
        """Another replica ended this job: kill its green thread if it runs this attempt here."""
        if job_id not in self.running or (attempt is not None and self.attempts.get(job_id) != attempt):
            return False
        return Lane.kill(self, job_id)

    def tick(self) -> None:
        """Release the delayed jobs that are due (whoever pushed them: a replica that died cannot)."""
        queued = self.queue.queued
        following = self.queue.release_due(self._clock())
        if self.queue.queued > queued:
            super().pushed()
        self.delayed(following)

    def _dispatch(self) -> None:
        """As Lane's, and it waits while the pool is full cluster-wide (see the class)."""
        pool, parked, queue = self.pool, self._dispatcher, self.queue
        while True:
            if (queue.queued <= self._starting or self._dry) and not self._hinted:
                parked.park(RECHECK_S)  # woken by a submission here, or a hint from another replica
                self._dry = self._full = False  # a refusal seen before this wait is stale: probe at once
                continue
            here = pool.running() >= pool.size
            if here or self._full or (self._probing and self._starting):
                # Full here, or cluster-wide, or a probe on its way: woken by a slot freed here or anywhere,
                # a resize, or the probe's outcome; and it looks again after ROOM_POLL_S whatever happened.
                self._full, self._pool_full = False, True
                try:
                    parked.park(ROOM_POLL_S)
                finally:
                    self._pool_full = False
                continue
            self._hinted = False
            pool.spawn(self._slot)
            self._starting += 1

    def _leaving(self) -> None:
        """Release the lease this slot carried from its last job, if any; a take started ahead (the slot
        raised) is waited for and its lease released: a job it took is left to the reaper (WorkerLost)."""
        current = getcurrent()
        token = self._carried.pop(current, None)
        if current in self._ahead:
            ahead, token = self._ahead.pop(current)
            ahead.wait()
        if token is not None:
            self._cluster.release(self.name, token)

    def _end_and_take(self, job: Job, status: str, *args: Any, **kwargs: Any) -> bool:
        """End `job` (the engine's `end`); when it is the slot running it that ends it and the slot goes on,
        its next take starts first, in a green thread of its own, so that the job's finish and the next take
        share one round trip (the take runs right after the finish, in the same pipeline)."""
        current = getcurrent()
        if current in self._ending and not self._holding and Lane._going_on(self):
            token = self._ending.pop(current)
            self._ahead[current] = (spawn(self._cluster.take, self.name, token, self.queue, self._clock()), token)
        return self._end_job(job, status, *args, **kwargs)

    def _next(self) -> Job | None:
        """As Lane's, but a take started ahead is always seen through (it may have taken a job)."""
        return self._take() if getcurrent() in self._ahead else super()._next()

    def _going_on(self) -> bool:
        return getcurrent() in self._ahead or super()._going_on()

    def _take(self) -> Job | None:
        """The next job, with a lease: the one this slot carries from its last job while the pool's size allows
        it, else a new one; granted (or kept), taken and bound in one step."""
        cluster, current = self._cluster, getcurrent()
        if current in self._ahead:  # started as its last job ended
            ahead, token = self._ahead.pop(current)
            job, leased = ahead.wait()
            if job is not None or leased:
                return self._took(job, token, leased)
        elif (token := self._carried.pop(current, None)) is not None:
            job, leased = cluster.take(self.name, token, self.queue, self._clock())
            if job is not None or leased:  # else not kept (the size shrank, or it lapsed): a new one
                return self._took(job, token, leased)
        token = cluster.token()
        job, leased = cluster.take(self.name, token, self.queue, self._clock())
        if not leased:  # full cluster-wide: the dispatcher waits, then probes
            self._full = self._probing = True
        elif self._probing:  # a probe got a lease: the dispatcher spawns for the rest again
            self._probing = False
            self._dispatcher.wake_one()
        return self._took(job, token, leased)

    def _took(self, job: Job | None, token: str, leased: bool) -> Job | None:
        """`job` to run with `token`'s lease, or None (after a lease but no job: dry until the next push)."""
        if job is None:
            self._dry = leased  # a lease but no job: the next push (here or a hint) wakes the dispatcher
            return None
        self._tokens[job.id] = token
        return job

    def _run(self, job: Job, thread: Any) -> None:
        token, attempt = self._tokens.pop(job.id), job.attempt
        self.attempts[job.id] = attempt
        self._ending[thread] = token
        try:
            super()._run(job, thread)
        finally:
            if self.attempts.get(job.id) == attempt:
                del self.attempts[job.id]
            if self._ending.pop(thread, None) is not None:  # no take started ahead: the slot carries the lease
                self._carried[thread] = token  # released when the slot leaves, or kept for its next job

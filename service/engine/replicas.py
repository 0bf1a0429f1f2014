"""Cluster mode's runtime (design §8): several replicas on one Redis behave as one service.

Beside each replica's engine run three green threads:
- the *publisher* sends the hints this replica gathered (jobs ended, piles changed, jobs pushed, slots freed,
  kills, resizes) as one pub/sub message per hub pass at most;
- the *listener* applies the other replicas' hints: it wakes long-polls and streams (which re-read the store),
  idle dispatchers and those waiting for a slot, kills a cancelled job running here, follows resizes; after
  each (re)subscription it wakes every waiter here, as a hint may have been missed;
- the *ticker* renews this replica's leases (one round trip), follows the cluster-wide sizes, reaps lapsed
  leases (`WorkerLost` through the engine's own transitions, exactly once cluster-wide), releases due delayed
  jobs, stores this replica's heartbeat and, every second, wakes every waiter here to re-read the store.
Pub/sub is only ever a hint: every decision is taken on the store's records and the lease scripts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import time
from functools import partial
from typing import Any

import orjson

from pool_core import sleep, spawn
from pool_core.waitqueue import WaitQueue

from ..config import Config
from ..storage import Job, Store
from ..storage.records import FAILED, RUNNING, rfc3339
from ..storage.redis.replicas import ClusterState
from .cluster import ClusterLane, ClusterNotifier, LocalCluster

__all__ = ["RedisCluster", "default_replica_id", "open_cluster"]

log = logging.getLogger("greenpool.cluster")
_BEAT_S = 1.0  # seconds between heartbeats (and re-checks of every waiter)
_QUIET_S = 30.0  # seconds between two log lines of one kind of failure to reach Redis
_COUNTERS = ("submitted", "succeeded", "failed", "cancelled", "timed_out")
_SUMMED = ("running", "held", "waiting", *_COUNTERS)


def open_cluster(config: Config, store: Store) -> LocalCluster | RedisCluster:
    """Cluster mode on a Redis store (on its client: `GREENPOOL_REPLICA_ID`, `GREENPOOL_LEASE`), else one
    local replica."""
    client = getattr(store, "client", None)
    if client is None or not getattr(config, "redis_url", ""):
        return LocalCluster()
    return RedisCluster(client, config.redis_prefix, config.replica_id or default_replica_id(), config.lease)


def default_replica_id() -> str:
    """`hostname:pid`, unique per process on a host (what GREENPOOL_REPLICA_ID defaults to)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisCluster:
    """The cluster collaborator of one replica's engine, on the store's Redis `client` under `prefix`."""

    def __init__(self, client: Any, prefix: str, replica: str, lease_s: float) -> None:
        self.replica, self.lease_s = replica, lease_s
        self.state = ClusterState(client, prefix, replica, lease_s)
        self.lane_type = partial(ClusterLane, cluster=self)
        self._tokens = (f"{os.urandom(6).hex()}:{n}" for n in itertools.count())  # unique across restarts
        self._held: dict[str, tuple[str, str | None]] = {}  # lease token → (pool, job id it runs, if any)
        self._pending: dict[str, set] = {}  # hints not yet published, by kind
        self._doorbell = WaitQueue()  # the publisher, parked until there are hints
        self._live: list[tuple[str, float, dict]] = []  # the replicas seen at the last heartbeat
        self._engine: Any = None
        self._threads: list[Any] = []
        self._logged: dict[str, float] = {}  # kind of failure → when it was last logged

    def notifier(self) -> ClusterNotifier:
        self._notifier = ClusterNotifier(self.hint)
        return self._notifier

    def start(self, engine: Any) -> None:
        """Seed the cluster-wide sizes with this replica's pools, follow the stored ones, start the threads."""
        self._engine = engine
        self.state.seed({lane.name: lane.pool.size for lane in engine.runner})
        self._follow_sizes()
        self._threads = [spawn(self._publish), spawn(self._listen), spawn(self._tick)]

    def threads(self) -> list[Any]:
        return list(self._threads)

    def here(self, running: list[Job]) -> list[Job]:
        """Of the jobs the shared store has running, those running on this replica (a drain ends only those)."""
        lanes = self._engine.runner.lanes
        return [job for job in running if job.pool in lanes and job.id in lanes[job.pool].running]

    def leave(self) -> None:
        """This replica has drained: it beats no more and leaves the replicas' list at once (its hints go on
        until the process exits)."""
        self._threads[2].kill()  # the ticker
        try:
            self.state.leave()
        except Exception as exc:  # its heartbeat lapses after a lease period instead
            self._trouble("replica not removed", exc)

    def lost(self, running: list[Job]) -> list[Job]:
        """Of the jobs the store has `running` at start, those bound to a lease of this replica's id: a restart of
        this replica (their leases are released). The others are left to the replicas running them, or to the
        reaper once their leases lapse (also those bound to no lease: `_orphans`)."""
        if not running:
            return []
        bound = self.state.bound({job.pool for job in running})
        lost = []
        for job in running:
            replica, pool, token = bound.get((job.id, job.attempt), ("", "", ""))
            if replica == self.replica:
                lost.append(job)
                self.state.release(pool, token)
        return lost

    def _trouble(self, what: str, exc: Exception, **extra: Any) -> None:
        """Log a failure to reach Redis, once per `_QUIET_S` per kind (it retries by itself meanwhile)."""
        now = time.monotonic()
        if now - self._logged.get(what, -_QUIET_S) >= _QUIET_S:
            self._logged[what] = now
            log.warning(what, extra={**extra, "error_message": str(exc) or repr(exc)})

    # -- leases (ClusterLane's Slots) -----------------------------------------------------------
    def token(self) -> str:
        return next(self._tokens)

    def _grant(self, pool: str, token: str) -> bool:
        """A lease for the new `token` on one of `pool`'s slots, if fewer than the size are held."""
        try:
            granted = self.state.acquire(pool, token)
        except Exception as exc:  # Redis down, or no size yet: no slot now; the lane asks again
            self._trouble("lease not acquired", exc, pool=pool)
            return False
        if granted:
            self._held[token] = (pool, None)
        return granted

    def take(self, pool: str, token: str, queue: Any, at: float) -> tuple[Job | None, bool]:
        """The next job of `queue` with lease `token`: on the Redis store one script (keep or grant, take,
        bind: `take_leased`), else (a store of its own beside this Redis) keep, take and bind in three steps."""
        fused = getattr(queue, "take_leased", None)
        if fused is None:
            return self._take_apart(pool, token, queue, at)
        try:
            job, leased = fused(self.replica, token, math.ceil(self.lease_s * 1000), at)
        except Exception as exc:  # it lapses after the lease period instead (a job it took: the reaper's)
            self._trouble("job not taken", exc, pool=pool)
            job, leased = None, False
        if job is not None:
            self._held[token] = (pool, job.id)
        elif self._held.pop(token, None) is not None:
            self.hint("room", pool)
        return job, leased

    def _take_apart(self, pool: str, token: str, queue: Any, at: float) -> tuple[Job | None, bool]:
        if not (self._keep(pool, token) if token in self._held else self._grant(pool, token)):
            return None, False
        try:
            job = queue.take(at)
        except BaseException:
            self.release(pool, token)
            raise
        if job is None:
            self.release(pool, token)
            return None, True
        self._held[token] = (pool, job.id)
        try:
            self.state.bind(pool, token, job.id, job.attempt)
        except Exception as exc:  # its lease lapses unbound: the job is left to the store's recovery
            self._trouble("lease not bound", exc, pool=pool, job_id=job.id)
        return job, True

    def _keep(self, pool: str, token: str) -> bool:
        """Keep `token`'s lease for another attempt if no more than the size are held (else it is released)."""
        if token not in self._held:
            return False
        self._held[token] = (pool, None)
        try:
            kept = self.state.keep(pool, token)
        except Exception as exc:  # it lapses after the lease period instead
            self._trouble("lease not kept", exc, pool=pool)
            kept = False
        if not kept:
            self._held.pop(token, None)
            self.hint("room", pool)
        return kept

    def release(self, pool: str, token: str) -> None:
        if self._held.pop(token, None) is None:
            return
        try:
            self.state.release(pool, token)
        except Exception as exc:  # it lapses after the lease period instead
            self._trouble("lease not released", exc, pool=pool)
        self.hint("room", pool)

    # -- hints ----------------------------------------------------------------------------------
    def hint(self, kind: str, value: Any) -> None:
        """Tell the other replicas (gathered, published by the publisher once per hub pass at most)."""
        if not self._pending:
            self._doorbell.wake_one()
        self._pending.setdefault(kind, set()).add(value)

    def resized(self, pool: str, size: int) -> None:
        self.state.set_size(pool, size)
        self.hint("size", (pool, size))

    def running(self, pool: str) -> int:
        """Jobs of `pool` running across the cluster (its leases held now)."""
        return self.state.held(pool)

    def deleted(self, pool: str) -> None:
        self.state.set_size(pool, None)
        self.hint("deleted", pool)

    def _publish(self) -> None:
        while True:
            if not self._pending:
                self._doorbell.park()
            hints, self._pending = self._pending, {}
            try:
                self.state.publish({kind: list(values) for kind, values in hints.items()})
            except Exception as exc:  # lost hints: the waiters' re-checks and the ticker cover them
                self._trouble("hints not published", exc)
                sleep(0.1)

    def _listen(self) -> None:
        while True:
            pubsub = self.state.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.state.channel)
                self._notifier.recheck()  # hints sent while it was not subscribed are lost: re-read
                while True:
                    message = pubsub.get_message(timeout=_BEAT_S)
                    if message is not None:
                        self._apply(orjson.loads(message["data"]))
            except Exception as exc:
                self._trouble("hints not received; resubscribing", exc)
                sleep(0.5)
            finally:
                pubsub.close()

    def _apply(self, hint: dict[str, Any]) -> None:
        """Act on another replica's hints (never the truth: each re-reads what it is about)."""
        if hint.get("from") == self.replica:
            return
        notifier, lanes = self._notifier, self._engine.runner.lanes
        for job_id in hint.get("ended", ()):
            notifier.woke_job(job_id)
        for pile_id in hint.get("piles", ()):
            notifier.woke_pile(pile_id)
        for name in hint.get("pushed", ()):
            if name in lanes:
                lanes[name].hinted()
        for name in hint.get("room", ()):
            if name in lanes:
                lanes[name].room()
        for job_id, attempt in hint.get("kill", ()):
            self._kill(job_id, attempt)
        if hint.get("size") or hint.get("deleted"):
            self._follow_sizes()

    def _kill(self, job_id: str, attempt: int | None) -> None:
        """Another replica ended this job (its `finish` won): kill it if it runs here (re-read first, so the
        slot sees it ended and goes on)."""
        for lane in self._engine.runner:
            if job_id in lane.running:
                self._engine.store.jobs.get(job_id)
                if lane.kill_here(job_id, attempt):
                    log.info("job killed for another replica", extra={"job_id": job_id, "pool": lane.name})

    # -- the ticker -----------------------------------------------------------------------------
    def _tick(self) -> None:
        period = min(_BEAT_S / 2, self.lease_s / 3)
        renewed = beat = time.monotonic()
        while True:
            sleep(period)
            now = time.monotonic()
            steps = ((self._renew, now - renewed >= self.lease_s / 3), (self._follow_sizes, True), (self._reap, True),
                     (self._release_due, True), (self._beat, now - beat >= _BEAT_S))  # fmt: skip
            for step, due in steps:
                if due:
                    try:
                        step()
                    except Exception as exc:  # Redis down: the next tick tries again
                        self._trouble("cluster tick failed", exc, step=step.__name__)
            if now - renewed >= self.lease_s / 3:
                renewed = now
            if now - beat >= _BEAT_S:
                beat = now
                self._notifier.recheck()

    def _renew(self) -> None:
        held = list(self._held.items())
        for (token, (pool, job_id)), kept in zip(held, self.state.renew((p, t) for t, (p, _) in held), strict=True):
            if not kept and self._held.pop(token, None) is not None and job_id is not None:
                # Its lease lapsed (this replica was cut off too long): the attempt belongs to the reaper now.
                log.warning("lease lost; job killed here", extra={"job_id": job_id, "pool": pool})
                lane = self._engine.runner.lanes.get(pool)
                if lane is not None:
                    lane.kill_here(job_id, None)

    def _follow_sizes(self) -> None:
        """Make this replica's lanes the cluster-wide sizes: resize, add the pools created elsewhere, remove the
        idle ones deleted elsewhere."""
        engine, sizes = self._engine, self.state.sizes()
        runner = engine.runner
        for name, size in sizes.items():
            lane = runner.lanes.get(name)
            if lane is None:
                runner.add(engine._new_lane(name, size, runner.os_threads))
                log.info("pool created by another replica", extra={"pool": name, "size": size})
            elif lane.pool.size != size:
                runner.resize(name, size)
        for name in [n for n, lane in runner.lanes.items() if n not in sizes and n != "default"]:
            lane = runner.lanes[name]
            if not lane.pool.running() and not lane.queue.queued + lane.queue.delayed:
                runner.remove(name)

    def _reap(self) -> None:
        """End `WorkerLost` (or retry) each attempt whose lease lapsed: reported to one replica only, and ended
        through the store's compare-and-set, so exactly once cluster-wide. A lapsed lease bound to no job means
        its replica died between a grant and a bind: a job it may have taken is found among the running ones
        bound to no lease (`_orphans`)."""
        engine = self._engine
        unbound: set[str] = set()
        for pool, replica, job_id, attempt in self.state.reap(engine.runner.lanes):
            job = None if job_id is None else engine.store.jobs.get(job_id)
            if job_id is None:
                unbound.add(pool)
            elif job is not None and job.status == RUNNING and job.attempt == attempt:
                self._lost(job, replica)
        for job in self._orphans(unbound) if unbound else ():
            self._lost(job, "unknown")

    def _orphans(self, pools: set[str]) -> list[Job]:
        """Running jobs of `pools` bound to no lease, started over half a lease period ago (a live replica binds
        a job one round trip after it took it): a scan of the running records, only after a replica died."""
        horizon = self._engine._clock() - self.lease_s / 2
        running = [job for job in self._engine.store.jobs.select(RUNNING) if job.pool in pools]
        bound = self.state.bound(pools)
        return [job for job in running if (job.id, job.attempt) not in bound and (job.started_at or 0) <= horizon]

    def _lost(self, job: Job, replica: str) -> None:
        if job.pool in self._engine.runner.lanes:
            log.warning("lease lapsed", extra={"job_id": job.id, "pool": job.pool, "replica": replica})
            self._engine._end(job, FAILED, "WorkerLost", f"replica {replica} stopped renewing the job's lease")

    def _release_due(self) -> None:
        for lane in self._engine.runner:
            lane.tick()

    def _beat(self) -> None:
        pools = {lane.name: self._figures(lane) for lane in self._engine.runner}
        _, self._live = self.state.beat({"pools": pools})

    @staticmethod
    def _figures(lane: Any) -> dict[str, int]:
        stats = lane.stats()
        return {**{key: stats[key] for key in ("running", "held", "waiting")}, **lane.counts}

    # -- what /v1/pool reports ------------------------------------------------------------------
    def report(self, pool: str, stats: dict[str, Any]) -> dict[str, Any]:
        """Cluster-wide figures of `pool` (the live replicas' sums; `queued` is the shared queue's) and
        `replicas: [{id, running, last_seen}]`; `stats` is this replica's own, fresher than its heartbeat."""
        try:
            _, live = self.state.beat(None)
        except Exception:  # Redis down: the last heartbeat's view
            live = self._live
        mine = {key: stats[key] for key in _SUMMED}
        totals = dict.fromkeys(_SUMMED, 0)
        replicas = []
        seen_me = False
        for replica, seen, beat in live:
            figures = mine if replica == self.replica else beat.get("pools", {}).get(pool, {})
            seen_me |= replica == self.replica
            for key in _SUMMED:
                totals[key] += figures.get(key, 0)
            replicas.append({"id": replica, "running": figures.get("running", 0), "last_seen": rfc3339(seen)})
        if not seen_me:  # before this replica's first heartbeat
            for key in _SUMMED:
                totals[key] += mine[key]
            replicas.append({"id": self.replica, "running": mine["running"], "last_seen": rfc3339(time.time())})
        report = {**stats, **totals, "free": stats["size"] - totals["running"]}
        report["replicas"] = sorted(replicas, key=lambda r: r["id"])
        return report

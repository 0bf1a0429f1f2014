"""Named pools (design §9): which exist, their sizes, which pool a job goes to, and their changes at runtime.

Each pool is one lane of the runner (its slots, dispatcher, queue, counters). At start the pools are those
the configuration seeds (`GREENPOOL_POOLS`, `default` always) and those the store has a size for; a size in
the store wins over the seed, and each pool's start-up log line says where its size came from. A job runs
in the pool it names, else the one its task declares (`@task(pool=...)`), else `default`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import DEFAULT_POOL, Config
from ..storage import Job, Store
from ..tasks import Registry
from .errors import PoolInUse, PoolNotFound, UnknownPool
from .runner import Lane, Runner

__all__ = ["DEFAULT_POOL", "Pools"]

log = logging.getLogger("greenpool.jobs")
NewLane = Callable[[str, int, Any], Lane]  # new_lane(name, size, os_threads) -> a lane serving that pool


class Pools:
    """The runner's lanes by pool name: seeding, lookup, create-or-resize, delete."""

    def __init__(self, config: Config, registry: Registry, store: Store, new_lane: NewLane) -> None:
        self.registry, self.store, self._new_lane = registry, store, new_lane
        sizes: dict[str, tuple[int, str]] = {}
        stored = store.sizes.all()
        for name, (size, source) in config.pool_seeds().items():
            if name not in stored:  # the configuration seeds a store that has none
                store.sizes.set(name, size)
            sizes[name] = (size, source) if name not in stored else (stored[name], "store")
        for name, size in stored.items():
            sizes.setdefault(name, (size, "store"))
        threads = Runner.thread_pool(sum(size for size, _ in sizes.values()), config.max_threads)
        self.runner = Runner({name: new_lane(name, size, threads) for name, (size, _) in sizes.items()},
                             threads, config.max_threads)  # fmt: skip
        self.lanes = self.runner.lanes
        self.default = self.lanes[DEFAULT_POOL]
        for name, (size, source) in sizes.items():
            log.info("pool", extra={"pool": name, "size": size, "size_from": source})

    def lane(self, name: str) -> Lane:
        """The lane of pool `name`; PoolNotFound if there is none."""
        lane = self.lanes.get(name)
        if lane is None:
            raise PoolNotFound(name)
        return lane

    def lane_for(self, pool: str | None, task: str, index: int | None = None) -> Lane:
        """The lane a job of `task` naming `pool` (None: none) runs in; UnknownPool (job `index`) if none."""
        if pool is None:
            pool = self.registry.pool_of(task)
            if pool is None:
                return self.default
        lane = self.lanes.get(pool)
        if lane is None:
            raise UnknownPool(pool, sorted(self.lanes), index)
        return lane

    def put(self, name: str, size: int) -> bool:
        """Create pool `name` with `size` slots, or resize it (see Lane.resize); True if it was created."""
        self.store.sizes.set(name, size)
        if name in self.lanes:
            self.runner.resize(name, size)
            return False
        self.runner.add(self._new_lane(name, size, self.runner.os_threads))
        log.info("pool created", extra={"pool": name, "size": size})
        return True

    def delete(self, name: str, running_in_cluster: Callable[[str], int] = lambda name: 0) -> None:
        """Delete an idle pool: PoolNotFound, or PoolInUse for `default` or one with jobs queued or running
        (here, or on any replica: `running_in_cluster`)."""
        lane = self.lane(name)
        running, queued = lane.pool.running(), lane.queue.queued + lane.queue.delayed
        if name != DEFAULT_POOL and not running and not queued:
            running = running_in_cluster(name)
        if name == DEFAULT_POOL or running or queued:
            raise PoolInUse(name, running, queued)
        self.runner.remove(name)
        self.store.sizes.delete(name)
        log.info("pool deleted", extra={"pool": name})

    def adopt(self, queued: list[Job]) -> None:
        """Give each pool that queued jobs were reloaded into, but that has no size anywhere, a lane (the size
        of `default`), so every recovered job runs in its own pool."""
        for name in sorted({job.pool for job in queued} - set(self.lanes)):
            size = self.default.pool.size
            log.warning("pool of recovered jobs had no size", extra={"pool": name, "size": size})
            self.put(name, size)

"""The Redis store (`GREENPOOL_STORE=redis://…`): every port on one Redis shared by every replica (design §8).

Each compare-and-set (finish, retry, reserve, take, claim) and each change to more than one key is one Lua
script (scripts.py), atomic against every replica's calls; reads are single commands or pipelines. Records
are hashes (jobs.py), piles a hash and two lists (piles.py); idempotency keys a hash plus a claim-order
sorted set; pool sizes the `P:limits` hash that the cluster-wide LeaseSemaphore (leases.py) reads, so a
resize is one HSET. `flush()` is a no-op: each port call returns only once Redis has acknowledged its writes
(what survives a crash of Redis itself is as Redis is configured: AOF in the compose profile).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Hashable
from typing import Any

import redis

from pool_core import sleep, spawn

from ..ports import StoreError
from .client import connect, parse_url
from .jobs import RedisJobQueue, RedisJobRecords, text
from .link import Link
from .piles import RedisPileRecords, RedisResultLogs

__all__ = ["REFRESH_S", "RedisStore"]

REFRESH_S = 0.25  # seconds between re-reads of the queues' cached counts (what other replicas changed)
_PICKLE = pickle.HIGHEST_PROTOCOL


class RedisIdempotencyKeys:
    """`P:keys` hash (pickled key → pickled value) and `P:keys:order` (key → claim number), at most `limit`."""

    def __init__(self, link: Link, limit: int) -> None:
        self._link, self.limit = link, max(1, limit)

    def claim(self, key: Hashable, value: Any) -> Any:
        found = self._link.run("claim", pickle.dumps(key, _PICKLE), pickle.dumps(value, _PICKLE), self.limit)
        return None if not found else pickle.loads(found)

    def release(self, key: Hashable, value: Any) -> None:
        self._link.run("unclaim", pickle.dumps(key, _PICKLE), pickle.dumps(value, _PICKLE))

    def prune(self, live: Callable[[Any], bool], count: int) -> None:
        link, p = self._link, self._link.prefix
        with link.guard():
            keys = link.client.zrange(f"{p}:keys:order", 0, count - 1)
            values = link.client.hmget(f"{p}:keys", keys) if keys else []
        for key, value in zip(keys, values, strict=True):
            if value is None:  # forgotten meanwhile
                continue
            if live(pickle.loads(value)):
                return
            link.run("unclaim", key, value)

    def __len__(self) -> int:
        with self._link.guard():
            return int(self._link.client.hlen(f"{self._link.prefix}:keys"))


class RedisPoolSizes:
    """`P:limits`: pool → size, the hash the cluster-wide lease semaphore reads its limits from."""

    def __init__(self, link: Link) -> None:
        self._link, self._key = link, f"{link.prefix}:limits"

    def get(self, pool: str) -> int | None:
        with self._link.guard():
            size = self._link.client.hget(self._key, pool)
        return None if size is None else int(size)

    def set(self, pool: str, size: int) -> None:
        with self._link.guard():
            self._link.client.hset(self._key, pool, int(size))

    def delete(self, pool: str) -> None:
        with self._link.guard():
            self._link.client.hdel(self._key, pool)

    def all(self) -> dict[str, int]:
        with self._link.guard():
            sizes = self._link.client.hgetall(self._key)
        return {text(pool): int(size) for pool, size in sizes.items()}


class RedisStore:
    """Every port on the Redis at `url` under key prefix `prefix`; StoreError naming it if it cannot be
    reached at open. A green thread re-reads the queues' counts every REFRESH_S (and probes a Redis that is
    down), so `JobQueue.queued`/`delayed` lag other replicas' changes by at most about that."""

    durable = True
    parks = True  # its port calls park the caller: the engine shields what must not stop half-way (engine/shield.py)

    def __init__(self, url: str, max_records: int, prefix: str = "gp", password: str | None = None,
                 **connect_options: Any) -> None:  # fmt: skip
        target = parse_url(url)
        self.where = where = f"{'rediss' if target.tls else 'redis'}://{target.host}:{target.port}/{target.db}"
        self.client = connect(url, password, **connect_options)
        link = self._link = Link(self.client, prefix, where)
        self.jobs = RedisJobRecords(link, max_records)
        self.piles = RedisPileRecords(link)
        self.jobs.logged = self.piles.seen
        self.results = RedisResultLogs(link, self.piles, self.jobs)
        self.keys = RedisIdempotencyKeys(link, max_records)
        self.sizes = RedisPoolSizes(link)
        self._queues: dict[str, RedisJobQueue] = {}
        try:
            with link.guard():
                pipe = self.client.pipeline(transaction=False)
                for name in ("jobs", "piles"):
                    pipe.zcard(f"{prefix}:{name}")
                pipe.hlen(f"{prefix}:keys")
                jobs, piles, keys = pipe.execute()
        except (StoreError, redis.RedisError) as exc:
            self.client.close()
            raise StoreError(f"cannot use the Redis store at {where}: {exc}") from None
        self.recovered = {"jobs": jobs, "piles": piles, "keys": keys}
        self._refresher = spawn(self._refresh_loop)

    def queue(self, pool: str) -> RedisJobQueue:
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = RedisJobQueue(self._link, pool, self.jobs)
            self._refresh([queue])
        return queue

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Records, members and pushes made inside go to Redis in one round trip (per BATCH_MAX) at its end:
        the engine wraps a pile's jobs in it. Their `seq`, `pile_index` and the queue counts are set then."""
        return self._link.batch()

    def flush(self) -> None:
        """Nothing to wait for: every port call returned after Redis acknowledged its writes."""

    def unavailable(self) -> str | None:
        return self._link.unavailable()

    def close(self) -> None:
        self._refresher.kill()
        self._link.close()
        self.client.close()

    def _refresh(self, queues: list[RedisJobQueue]) -> None:
        """Re-read the cluster-wide counts of `queues` (one round trip)."""
        p, pipe = self._link.prefix, self.client.pipeline(transaction=True)  # one consistent snapshot
        for queue in queues:
            pipe.get(f"{p}:q:{queue.pool}:n")
            pipe.zcard(f"{p}:q:{queue.pool}:delayed")
            pipe.get(f"{p}:q:{queue.pool}:v")
        with self._link.guard():
            counts = pipe.execute()
        for i, queue in enumerate(queues):
            n, delayed, version = counts[3 * i : 3 * i + 3]
            queue.refresh(int(n or 0), int(delayed), int(version or 0))

    def _refresh_loop(self) -> None:
        while True:
            sleep(REFRESH_S)
            if self._link.unavailable() is None and self._queues:
                with contextlib.suppress(StoreError):  # down: unavailable() probes it until it is back
                    self._refresh(list(self._queues.values()))

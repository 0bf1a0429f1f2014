"""The cluster's shared state beside the lease semaphore: which job each lease runs, replicas' heartbeats, hints.

Keys, under `prefix` (the store's, default `gp`), beside those of leases.py:
- `{prefix}:pool:P:bound` hash: lease token → "JOB_ID ATTEMPT", the attempt a lease's slot runs (set right
  after the slot took the job, deleted with the lease's release or by the reaper).
- `{prefix}:replicas` hash: replica id → its heartbeat (JSON: per pool its running and counters);
  `{prefix}:replicas:seen` sorted set: replica id → when it last beat (ms, Redis `TIME`).
- `{prefix}:hints` pub/sub channel: JSON wake-up hints between replicas (never the truth: the store is).
Time is Redis' (`TIME` in the scripts), never a replica's clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from .leases import LeaseSemaphore, _ms, _text

__all__ = ["ClusterState"]

# KEYS: replicas, seen. ARGV: replica, heartbeat json, stale ms → {now ms, {id, seen ms, json}…} of the live ones
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[1], id) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3])) end
local out = {now}
local live = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[1], live[i]) or '{}'
end
return out
"""


class ClusterState:
    """One replica's view of the shared cluster state: leases (acquire, bind, renew, release, reap),
    heartbeats and the hints channel. Every call is one round trip (a script, or a pipeline of them)."""

    def __init__(self, client: Any, prefix: str, replica: str, lease_s: float) -> None:
        self.client, self.prefix, self.replica, self.lease_s = client, prefix, replica, lease_s
        self.leases = LeaseSemaphore(client, prefix)
        self.channel = f"{prefix}:hints"
        self._replicas, self._seen = f"{prefix}:replicas", f"{prefix}:replicas:seen"
        self._beat = client.register_script(_BEAT)

    def _bound(self, pool: str) -> str:
        return f"{self.prefix}:pool:{pool}:bound"

    def acquire(self, pool: str, token: str) -> bool:
        """A lease for `token` on one of `pool`'s cluster-wide slots, if fewer than its size are held."""
        return self.leases.acquire(pool, self.replica, token, self.lease_s).granted

    def bind(self, pool: str, token: str, job_id: str, attempt: int) -> None:
        """Record that `token`'s slot runs attempt `attempt` of job `job_id` (what the reaper ends if it lapses)."""
        self.client.hset(self._bound(pool), token, f"{job_id} {attempt}")

    def release(self, pool: str, token: str) -> bool:
        """Free `token`'s slot and forget what it ran; True only for the call that freed it."""
        pipe = self.client.pipeline(transaction=False)
        self.leases._release(keys=self.leases._keys(pool), args=[token], client=pipe)
        pipe.hdel(self._bound(pool), token)
        return bool(pipe.execute()[0])

    def renew(self, held: Iterable[tuple[str, str]]) -> list[bool]:
        """Renew each `(pool, token)` for another lease period (one round trip); False where it was lost."""
        held = list(held)
        if not held:
            return []
        pipe, ms = self.client.pipeline(transaction=False), _ms(self.lease_s)
        for pool, token in held:
            self.leases._renew(keys=self.leases._keys(pool), args=[token, ms], client=pipe)
        return [bool(done) for done in pipe.execute()]

    def reap(self, pools: Iterable[str]) -> list[tuple[str, str, str | None, int]]:
        """`(pool, replica, job_id, attempt)` of each lease of `pools` that lapsed since any replica's last reap
        (each reported once cluster-wide), job None if its slot had not bound a job to it; bindings forgotten."""
        pools = list(pools)
        pipe = self.client.pipeline(transaction=False)
        for pool in pools:
            self.leases._reap(keys=self.leases._keys(pool), client=pipe)
        replies = zip(pools, pipe.execute(), strict=True)
        lapsed = [(pool, _text(flat[i]), _text(flat[i + 1])) for pool, flat in replies for i in range(0, len(flat), 2)]
        if not lapsed:
            return []
        pipe = self.client.pipeline(transaction=False)
        for pool, token, _ in lapsed:
            pipe.hget(self._bound(pool), token)
            pipe.hdel(self._bound(pool), token)
        bound = pipe.execute()[::2]
        found: list[tuple[str, str, str | None, int]] = []
        for (pool, _, replica), what in zip(lapsed, bound, strict=True):
            job_id, attempt = _text(what).split() if what is not None else (None, 0)
            found.append((pool, replica, job_id, int(attempt)))
        return found

    def bound(self, pools: Iterable[str]) -> dict[tuple[str, int], tuple[str, str, str]]:
        """`(job id, attempt)` → `(replica, pool, token)` of the lease it is bound to, of every attempt of `pools`
        bound to a lease now."""
        pools = list(pools)
        pipe = self.client.pipeline(transaction=False)
        for pool in pools:
            pipe.hgetall(self._bound(pool))
            pipe.hgetall(self.leases._keys(pool)[1])
        replies = pipe.execute()
        found = {}
        for pool, bound, owners in zip(pools, replies[::2], replies[1::2], strict=True):
            for token, what in bound.items():
                job_id, attempt = _text(what).split()
                found[(job_id, int(attempt))] = (_text(owners.get(token, b"")), pool, _text(token))
        return found

    def held(self, pool: str) -> int:
        """Leases of `pool` held now across the cluster (lapsed ones included until a script moves them)."""
        return int(self.client.zcard(self.leases._keys(pool)[0]))

    def beat(self, heartbeat: dict[str, Any] | None) -> tuple[float, list[tuple[str, float, dict[str, Any]]]]:
        """Store this replica's `heartbeat` (None: only read), forget replicas silent for a lease period;
        Redis' time now and `(id, last seen, heartbeat)` of each live replica (seconds since the epoch)."""
        me = "" if heartbeat is None else self.replica
        flat = self._beat(keys=[self._replicas, self._seen],
                          args=[me, orjson.dumps(heartbeat or {}), _ms(self.lease_s)])  # fmt: skip
        live = [(_text(flat[i]), int(flat[i + 1]) / 1000, orjson.loads(flat[i + 2])) for i in range(1, len(flat), 3)]
        return int(flat[0]) / 1000, live

    def sizes(self) -> dict[str, int]:
        """Every pool's cluster-wide size (the limits hash)."""
        return {_text(pool): int(size) for pool, size in self.client.hgetall(self.leases.limits_key).items()}

    def seed(self, sizes: dict[str, int]) -> None:
        """Give each pool without a cluster-wide size this replica's (the store seeds it the same way)."""
        if sizes:
            pipe = self.client.pipeline(transaction=False)
            for pool, size in sizes.items():
                pipe.hsetnx(self.leases.limits_key, pool, size)
            pipe.execute()

    def set_size(self, pool: str, size: int | None) -> None:
        """Set (None: forget) a pool's cluster-wide size."""
        if size is None:
            self.client.hdel(self.leases.limits_key, pool)
        else:
            self.leases.set_size(pool, size)

    def publish(self, hint: dict[str, Any]) -> None:
        """Send a wake-up hint to every replica (this one ignores its own)."""
        self.client.publish(self.channel, orjson.dumps({"from": self.replica, **hint}))

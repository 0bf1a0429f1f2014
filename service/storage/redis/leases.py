"""The cluster-wide pool limit: per pool, one sorted set of leases that is both the in-flight registry and the
semaphore's holders, changed only by Lua scripts (atomic on the server) that take the time from Redis.

Keys, for a pool P under `prefix` (default `gp`):
- `{prefix}:limits` hash: P → the pool's size (shared by every replica; a resize is one HSET).
- `{prefix}:pool:P:leases` sorted set: token → lease expiry (ms, Redis `TIME`).
- `{prefix}:pool:P:owners` hash: token → replica id, for every lease in the set.
- `{prefix}:pool:P:lapsed` hash: token → replica id of leases that expired and were taken out of the set
  by `acquire` (to free their slots) but not yet handed to the caller of `reap`.
A lease whose expiry has passed is lost, even before it is reaped: it cannot be renewed, it no longer
counts against the size, and `reap` reports it exactly once (until then `acquire` refuses its token).
`acquire` with a token that already holds a lease renews it, so a retried acquire never takes two slots;
`release` frees a token's slot at most once. Tokens are meant to be unique per attempt.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import redis

__all__ = ["Grant", "LeaseSemaphore", "NoLimit"]

# Shared by every script: now in ms from Redis' clock, and expired leases moved from the set to `lapsed`.
_REAP_EXPIRED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, token in ipairs(expired) do
  redis.call('HSET', KEYS[3], token, redis.call('HGET', KEYS[2], token) or '')
  redis.call('HDEL', KEYS[2], token)
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
"""

# KEYS: leases, owners, lapsed, limits. ARGV: pool, replica, token, lease ms. → {granted 0/1, held, size}
_ACQUIRE = (
    _REAP_EXPIRED
    + """
local size = tonumber(redis.call('HGET', KEYS[4], ARGV[1]))
if not size then return redis.error_reply('NOLIMIT no size for pool ' .. ARGV[1]) end
local held = redis.call('ZCARD', KEYS[1])
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return {0, held, size} end
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[4]), ARGV[3])
  return {1, held, size}
end
if held >= size then return {0, held, size} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return {1, held + 1, size}
"""
)

# KEYS: leases, owners, lapsed. ARGV: token, lease ms. → 1 renewed, 0 not held (released, expired or reaped)
_RENEW = (
    _REAP_EXPIRED
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: leases, owners, lapsed. ARGV: token. → 1 released now, 0 not held (released before, or lapsed)
_RELEASE = (
    _REAP_EXPIRED
    + """
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
)

# KEYS: leases, owners, lapsed. → flat {token, replica, …} of every lapsed lease, each reported once
_REAP = (
    _REAP_EXPIRED
    + """
local lapsed = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
return lapsed
"""
)


class NoLimit(KeyError):
    """The pool has no size in the limits hash (the store seeds it before any acquire)."""


class Grant(NamedTuple):
    """What `acquire` saw: whether the lease is held, how many are held (after it) and the size."""

    granted: bool
    held: int
    size: int


class LeaseSemaphore:
    """Cluster-wide "at most size at once" per pool, on one Redis shared by every replica.

    Every call is one script run: atomic with respect to every other replica's calls. Sizes are read at
    each acquire, so a resize takes effect at the next one; lowering a size lets holders finish.
    """

    def __init__(self, client: Any, prefix: str = "gp") -> None:
        self.client = client
        self.prefix = prefix
        self.limits_key = f"{prefix}:limits"
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._reap = client.register_script(_REAP)

    def _keys(self, pool: str) -> list[str]:
        base = f"{self.prefix}:pool:{pool}"
        return [f"{base}:leases", f"{base}:owners", f"{base}:lapsed"]

    def set_size(self, pool: str, size: int) -> None:
        """Set the pool's cluster-wide size (0 or more)."""
        if size < 0:
            raise ValueError("a pool's size cannot be negative")
        self.client.hset(self.limits_key, pool, int(size))

    def acquire(self, pool: str, replica: str, token: str, lease_s: float) -> Grant:
        """Grant `token` (held by `replica`) a lease of `lease_s` seconds if fewer than the size are held."""
        try:
            granted, held, size = self._acquire(
                keys=[*self._keys(pool), self.limits_key], args=[pool, replica, token, _ms(lease_s)]
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("NOLIMIT"):
                raise NoLimit(pool) from None
            raise
        return Grant(bool(granted), int(held), int(size))

    def renew(self, pool: str, token: str, lease_s: float) -> bool:
        """Extend `token`'s lease to `lease_s` seconds from now; False if it is no longer held."""
        return bool(self._renew(keys=self._keys(pool), args=[token, _ms(lease_s)]))

    def release(self, pool: str, token: str) -> bool:
        """Free `token`'s slot; True only for the call that freed it (a second release is a no-op)."""
        return bool(self._release(keys=self._keys(pool), args=[token]))

    def reap(self, pool: str) -> list[tuple[str, str]]:
        """The (token, replica) of every lease that lapsed since the last reap, each returned once."""
        flat = self._reap(keys=self._keys(pool))
        pairs = [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2)]
        return sorted(pairs)

    def holders(self, pool: str) -> dict[str, str]:
        """token → replica of the leases held now (expired ones included until a script reaps them)."""
        owners = self.client.hgetall(self._keys(pool)[1])
        return {_text(token): _text(replica) for token, replica in owners.items()}


def _ms(seconds: float) -> int:
    if not seconds > 0:
        raise ValueError("a lease lasts more than 0 seconds")
    return math.ceil(seconds * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

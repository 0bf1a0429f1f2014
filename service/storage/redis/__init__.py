"""Redis for cluster mode (design §8): redis-py on pool_core's cooperative sockets, and the lease scripts.

`connect(url)` gives a `GreenRedis` whose every wait (connect, DNS, reads, pool, pub/sub, retry backoff)
parks the green thread, never the hub's OS thread; `LeaseSemaphore` is the cluster-wide pool limit;
`RedisStore` is every storage port on that Redis.
"""

from .client import GreenConnectionPool, GreenPubSub, GreenRedis, RedisURL, connect, parse_url
from .connection import GreenConnection, GreenRetry, GreenSSLConnection
from .leases import Grant, LeaseSemaphore, NoLimit
from .store import RedisStore

__all__ = [
    "GreenConnection", "GreenConnectionPool", "GreenPubSub", "GreenRedis", "GreenRetry", "GreenSSLConnection",
    "Grant", "LeaseSemaphore", "NoLimit", "RedisStore", "RedisURL", "connect", "parse_url",
]  # fmt: skip

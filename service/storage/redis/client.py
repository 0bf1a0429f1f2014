"""A redis-py client for the hub: a cooperative connection pool, pub/sub and transactions, built from a URL.

What in stock redis-py would block the OS thread, and what replaces it here:
- `ConnectionPool` raises when `max_connections` are in use and `BlockingConnectionPool` waits on a
  `threading.Condition`: `GreenConnectionPool` waits for a free connection on a pool_core Semaphore.
  (The pool's `threading.RLock` is only held around list operations that never switch green threads.)
- `PubSub.get_message(timeout)` before a subscription waits on a `threading.Event`, and its `RLock`
  (re-entrant per OS thread, so no exclusion between green threads) guards writes: `GreenPubSub` uses a
  cooperative flag and a per-green-thread re-entrant lock. `run_in_thread` is refused (spawn a green thread).
- `Redis.transaction(watch_delay=…)` sleeps with `time.sleep`: `GreenRedis.transaction` uses pool_core's.
- `Redis.lock()` (redis-py's Lock) polls with `time.sleep`: refused; the cluster store has lease scripts.
  So is `keyspace_notifications()` (worker threads, `time.sleep`): `pubsub()` subscribes cooperatively.
- RESP3 maintenance notifications (on by default with RESP3, redis-py's default protocol) act from
  `threading.Timer` threads on the pool's connections: `GreenConnectionPool` turns them off.
`connect()` builds the pool explicitly (`from_url` would swap the connection class for `rediss://`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import greenlet
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import PubSub
from redis.exceptions import WatchError
from redis.maint_notifications import MaintNotificationsConfig

from pool_core import Event, Semaphore, sleep

from .connection import GreenConnection, GreenRetry, GreenSSLConnection

__all__ = ["GreenConnectionPool", "GreenPubSub", "GreenRedis", "RedisURL", "connect", "parse_url"]

PASSWORD_ENV = "GREENPOOL_REDIS_PASSWORD"


class GreenConnectionPool(redis.ConnectionPool):
    """At most `max_connections` connections; a caller beyond that parks until one is released.

    `timeout` (seconds, None: forever) bounds that wait, then `redis.ConnectionError` is raised, as
    `BlockingConnectionPool` does. Connections are `GreenConnection`s unless `connection_class` says otherwise.
    """

    def __init__(
        self,
        connection_class: type = GreenConnection,
        max_connections: int = 64,
        timeout: float | None = 20.0,
        **connection_kwargs: Any,
    ) -> None:
        self.timeout = timeout
        super().__init__(
            connection_class=connection_class,
            max_connections=max_connections,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            **connection_kwargs,
        )

    def reset(self) -> None:
        """Forget every connection (also after a fork) and free every slot."""
        super().reset()
        self._slots = Semaphore(self.max_connections)

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> redis.Connection:
        """A connected connection, parking (not blocking the OS thread) while all of them are in use."""
        if not self._slots.acquire(timeout=self.timeout):
            raise redis.ConnectionError("No connection available.")
        return super().get_connection()  # on failure it hands the connection back through release()

    def make_connection(self) -> redis.Connection:
        """A new connection; a failure to build one frees the slot taken for it."""
        try:
            return super().make_connection()
        except BaseException:
            self._slots.release()
            raise

    def release(self, connection: redis.Connection) -> None:
        """Return a connection taken with `get_connection` (others are ignored) and free its slot."""
        held = connection in self._in_use_connections
        super().release(connection)
        if held:
            self._slots.release()


class _GreenFlag:
    """`threading.Event`'s set/clear/is_set/wait for green threads (PubSub's `subscribed_event`)."""

    def __init__(self) -> None:
        self._event = Event()

    def is_set(self) -> bool:
        return self._event.ready()

    def set(self) -> None:
        if not self._event.ready():
            self._event.send(True)

    def clear(self) -> None:
        if self._event.ready():
            self._event.reset()

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set() or self._event.wait(timeout) is True


class _GreenRLock:
    """A re-entrant lock owned by a green thread (a `threading.RLock` is owned by the whole OS thread)."""

    def __init__(self) -> None:
        self._owner: greenlet.greenlet | None = None
        self._depth = 0
        self._free = Semaphore(1)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        me = greenlet.getcurrent()
        if self._owner is me:
            self._depth += 1
            return True
        if not self._free.acquire(blocking, timeout):
            return False
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        if self._owner is not greenlet.getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        self._depth -= 1
        if not self._depth:
            self._owner = None
            self._free.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class GreenPubSub(PubSub):
    """redis-py's PubSub whose waits (`get_message(timeout)` before subscribing) and lock are cooperative."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscribed_event = _GreenFlag()
        self._lock = _GreenRLock()

    def run_in_thread(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: an OS thread cannot use this hub's sockets; spawn a green thread over `listen()` instead."""
        raise NotImplementedError("run_in_thread needs OS threads; use pool_core.spawn with listen()/get_message()")


class GreenRedis(redis.Redis):
    """A `redis.Redis` whose helpers that would sleep or wait on the OS thread are cooperative or refused."""

    def pubsub(self, **kwargs: Any) -> GreenPubSub:
        """A GreenPubSub on this client's pool."""
        return GreenPubSub(self.connection_pool, event_dispatcher=self._event_dispatcher, **kwargs)

    def transaction(self, func: Callable[[Any], Any], *watches: Any, **kwargs: Any) -> Any:
        """`Redis.transaction`, sleeping `watch_delay` between WATCH conflicts with pool_core.sleep."""
        shard_hint = kwargs.pop("shard_hint", None)
        value_from_callable = kwargs.pop("value_from_callable", False)
        watch_delay = kwargs.pop("watch_delay", None)
        with self.pipeline(True, shard_hint) as pipe:
            while True:
                try:
                    if watches:
                        pipe.watch(*watches)
                    func_value = func(pipe)
                    exec_value = pipe.execute()
                    return func_value if value_from_callable else exec_value
                except WatchError:
                    if watch_delay:
                        sleep(watch_delay)

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: redis-py's Lock polls with time.sleep, which would stop the hub."""
        raise NotImplementedError("redis-py's Lock blocks the OS thread; use the store's lease scripts")

    def keyspace_notifications(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: redis-py's helper runs worker threads and may `time.sleep`; subscribe with `pubsub()`."""
        raise NotImplementedError("keyspace_notifications uses OS threads; use pubsub().psubscribe('__key*__:…')")


class RedisURL:
    """The parts of `redis://[[user]:password@]host[:port][/db]` (or `rediss://`, TLS) that `connect` uses."""

    def __init__(self, tls: bool, host: str, port: int, db: int, username: str | None, password: str | None):
        self.tls, self.host, self.port, self.db = tls, host, port, db
        self.username, self.password = username, password

    def __repr__(self) -> str:  # never shows the password
        scheme = "rediss" if self.tls else "redis"
        return f"RedisURL({scheme}://{self.host}:{self.port}/{self.db}, password={'***' if self.password else None})"


def parse_url(url: str) -> RedisURL:
    """Parse a `redis://` / `rediss://` URL; anything else (scheme, port, db, query) is a ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme or url!r}")
    if parts.query or parts.fragment:
        raise ValueError("a Redis URL takes no query or fragment")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the Redis URL's port is not a number from 0 to 65535") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis URL's path must be a database number, not {parts.path!r}")
    if not parts.hostname:
        raise ValueError("the Redis URL names no host")
    return RedisURL(
        tls=parts.scheme == "rediss",
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def connect(
    url: str,
    password: str | None = None,
    *,
    connect_timeout: float | None = 5.0,
    socket_timeout: float | None = 5.0,
    max_connections: int = 64,
    pool_timeout: float | None = 20.0,
    retries: int = 1,
    health_check_interval: int = 0,
    environ: Mapping[str, str] = os.environ,
    **connection_kwargs: Any,
) -> GreenRedis:
    """A GreenRedis on its own GreenConnectionPool for `url`; nothing connects before the first command.

    The password is `password`, else the URL's, else `$GREENPOOL_REDIS_PASSWORD`. A command whose
    connection breaks is retried `retries` times on a new connection (so a restarted server is found
    again by the next command); timeouts are not retried. A blocking command (BLPOP, XREAD BLOCK) must
    block for less than `socket_timeout`. Extra keyword arguments go to the connections (`ssl_ca_certs`, …).
    """
    target = parse_url(url)
    retry = GreenRetry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries, (redis.ConnectionError,))
    pool = GreenConnectionPool(
        connection_class=GreenSSLConnection if target.tls else GreenConnection,
        max_connections=max_connections,
        timeout=pool_timeout,
        host=target.host,
        port=target.port,
        db=target.db,
        username=target.username,
        password=password or target.password or environ.get(PASSWORD_ENV) or None,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=retry,
        health_check_interval=health_check_interval,
        **connection_kwargs,
    )
    client = GreenRedis(connection_pool=pool)
    client.auto_close_connection_pool = True  # the pool is this client's alone: close() disconnects it
    return client

"""Which store the engine keeps its records in, from `GREENPOOL_STORE` (design §7)."""

from __future__ import annotations

import atexit

from ..config import Config
from ..storage import MemoryStore, Store, StoreError
from ..storage.redis import RedisStore
from ..storage.sqlite import SqliteStore
from ..storage.sqlite.schema import connect

__all__ = ["StoreError", "check_store", "open_store"]

_CLOSE_TIMEOUT = 5.0  # seconds the exit waits for the last commit


def open_store(config: Config) -> Store:
    """The configured store: a memory store, the SQLite file of `sqlite:PATH`, or the Redis of `redis://…`
    (StoreError naming the file or the server if it cannot be used)."""
    if config.sqlite_path:
        store = SqliteStore(config.sqlite_path, config.max_records, config.sqlite_sync, config.max_store_bytes)
        atexit.register(store.close, _CLOSE_TIMEOUT)  # what the drain ended is committed before the process exits
        return store
    if config.redis_url:
        return _redis(config)
    return MemoryStore(config.max_records)


def check_store(config: Config) -> None:
    """Open and migrate the configured store's file (or reach its Redis), then close it: StoreError naming it
    if it cannot be used (what `greenpool serve` checks before it starts the worker that opens it for good)."""
    if config.sqlite_path:
        connect(config.sqlite_path, config.sqlite_sync).close()
    elif config.redis_url:
        _redis(config).close()


def _redis(config: Config) -> RedisStore:
    try:
        return RedisStore(config.redis_url, config.max_records, config.redis_prefix)
    except ValueError as exc:  # a URL that cannot be parsed: never echo it (it may hold a password)
        raise StoreError(f"GREENPOOL_STORE is not a usable Redis URL: {exc}") from None

"""What the Redis store's ports share: the client, the key prefix, the scripts, and whether Redis answers.

A command that fails because Redis cannot be used now (refused, reset, timed out, loading, read-only, out of
memory) raises `StoreError` and marks the store down; `unavailable()` says so, probing with a PING at most
every PROBE_S, and the next command that succeeds clears it. The client itself reconnects on the next command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ..ports import StoreError
from .scripts import SCRIPTS

__all__ = ["BATCH_MAX", "PROBE_S", "Link"]

PROBE_S = 0.5  # seconds between PINGs while Redis is down (asked by `unavailable`)
BATCH_MAX = 3000  # `later` calls sent in one pipeline at most
# Unreachable, timed out, loading, read-only (a failed-over replica), out of memory: 503s until it clears.
_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
         redis.exceptions.MasterDownError, redis.exceptions.TryAgainError)  # fmt: skip


class Link:
    """The client, `prefix` (every key starts `prefix:`), the registered scripts and the down state."""

    def __init__(self, client: Any, prefix: str, where: str) -> None:
        self.client, self.prefix, self.where = client, prefix, where
        self.down: str | None = None  # why Redis cannot be used now, while it cannot
        self._probed = 0.0
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        self._batch: list[tuple[str, tuple[Any, ...], Callable[[Any], Any]]] | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run commands: a Redis that cannot be used now becomes StoreError (and marks the store down)."""
        try:
            yield
        except _DOWN as exc:
            self.down = f"the Redis store at {self.where} cannot be used now ({exc})"
            self._probed = time.monotonic()
            raise StoreError(self.down) from None
        self.down = None

    def run(self, name: str, *args: Any) -> Any:
        """Script `name` (service.storage.redis.scripts) with ARGV `prefix, *args`."""
        with self.guard():
            return self._scripts[name](args=[self.prefix, *args])

    def later(self, name: str, *args: Any, then: Callable[[Any], Any]) -> None:
        """`then(run(name, *args))`, now, or inside `batch()` with the batch's one round trip."""
        if self._batch is None:
            then(self.run(name, *args))
            return
        self._batch.append((name, args, then))
        if len(self._batch) >= BATCH_MAX:
            self._flush()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Send the `later` calls made inside in one pipeline (each script still atomic on its own), at the
        end (and every BATCH_MAX calls); an error inside drops those not sent yet."""
        if self._batch is not None:  # already batching: one batch
            yield
            return
        self._batch = []
        try:
            yield
            self._flush()
        finally:
            self._batch = None

    def _flush(self) -> None:
        batch, self._batch = self._batch or [], []
        if not batch:
            return
        pipe = self.client.pipeline(transaction=False)
        for name, args, _ in batch:
            self._scripts[name](args=[self.prefix, *args], client=pipe)
        with self.guard():
            replies = pipe.execute()
        for (_, _, then), reply in zip(batch, replies, strict=True):
            then(reply)

    def unavailable(self) -> str | None:
        """Why the store cannot take work now, or None; while down, a PING at most every PROBE_S tells."""
        if self.down is not None and time.monotonic() - self._probed >= PROBE_S:
            self._probed = time.monotonic()
            try:
                self.client.ping()
                self.down = None
            except _DOWN:
                pass
        return self.down

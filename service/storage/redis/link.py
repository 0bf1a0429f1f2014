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

import orjson
import redis
from greenlet import getcurrent

from ..ports import StoreError
from .coalesce import Coalescer
from .scripts import SCRIPTS

__all__ = ["BATCH_MAX", "PROBE_S", "Link"]

PROBE_S = 0.5  # seconds between PINGs while Redis is down (asked by `unavailable`)
BATCH_MAX = 3000  # `later` calls sent in one `enqueue` script run at most
# Unreachable, timed out, loading, read-only (a failed-over replica), out of memory: 503s until it clears.
_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
         redis.exceptions.MasterDownError, redis.exceptions.TryAgainError)  # fmt: skip


def _text(value: Any) -> str:
    """A script argument as the JSON string `enqueue` reads."""
    if isinstance(value, str):
        return value
    return value.decode() if isinstance(value, bytes) else str(value)


class Link:
    """The client, `prefix` (every key starts `prefix:`), the registered scripts and the down state."""

    def __init__(self, client: Any, prefix: str, where: str) -> None:
        self.client, self.prefix, self.where = client, prefix, where
        self.down: str | None = None  # why Redis cannot be used now, while it cannot
        self._probed = 0.0
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        # The `later` calls of each green thread inside `batch()`: its own, as another's flush parks meanwhile.
        self._batches: dict[Any, list[tuple[str, tuple[Any, ...], Callable[[Any], Any]]]] = {}
        self._coalescer = Coalescer(client)

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
        """Script `name` (service.storage.redis.scripts) with ARGV `prefix, *args`, in the pipeline of this hub
        pass's calls (coalesce.py)."""
        with self.guard():
            return self._coalescer.call(self._scripts[name], (self.prefix, *args))

    def later(self, name: str, *args: Any, then: Callable[[Any], Any]) -> None:
        """`then(run(name, *args))`, now, or inside this green thread's `batch()` with its one round trip."""
        batch = self._batches.get(getcurrent())
        if batch is None:
            then(self.run(name, *args))
            return
        batch.append((name, args, then))
        if len(batch) >= BATCH_MAX:
            self._flush(batch)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Send the `later` calls made inside as one `enqueue` script run (atomic as a whole), at the end (and
        every BATCH_MAX calls); an error inside drops those not sent yet."""
        current = getcurrent()
        if current in self._batches:  # already batching: one batch
            yield
            return
        batch = self._batches[current] = []
        try:
            yield
            self._flush(batch)
        finally:
            del self._batches[current]

    def _flush(self, pending: list[tuple[str, tuple[Any, ...], Callable[[Any], Any]]]) -> None:
        """The batch's calls as one `enqueue` script run (one argument: their JSON), in their order; a push's
        `then` is told its pool's counts once, at its pool's last push of the batch."""
        batch = pending[:]
        del pending[:]
        if not batch:
            return
        ops = orjson.dumps([[name, *[_text(arg) for arg in args]] for name, args, _ in batch])
        with self.guard():
            replies, pools = orjson.loads(self._coalescer.call(self._scripts["enqueue"], (self.prefix, ops)))
        counts = {_text(pool): [queued, delayed, None, version] for pool, queued, delayed, version in pools}
        last = {args[0]: i for i, (name, args, _) in enumerate(batch) if name == "push"}
        for i, ((name, args, then), reply) in enumerate(zip(batch, replies, strict=True)):
            if name != "push":
                then(reply)
            elif last[args[0]] == i:
                then(counts[args[0]])

    def close(self) -> None:
        """Stop the senders (what they had not sent fails with the client's close)."""
        self._coalescer.close()

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

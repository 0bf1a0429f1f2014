"""What the Redis store's ports share: the client, the key prefix, the scripts, and whether Redis answers.

A command that fails because Redis cannot be reached (refused, reset, timed out, still loading) raises
`StoreError` and marks the store down; `unavailable()` says so, probing with a PING at most every PROBE_S,
and the next command that succeeds clears it. The client itself reconnects on the next command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ..ports import StoreError
from .scripts import SCRIPTS

__all__ = ["PROBE_S", "Link"]

PROBE_S = 0.5  # seconds between PINGs while Redis is down (asked by `unavailable`)
_DOWN = (redis.ConnectionError, redis.TimeoutError)


class Link:
    """The client, `prefix` (every key starts `prefix:`), the registered scripts and the down state."""

    def __init__(self, client: Any, prefix: str, where: str) -> None:
        self.client, self.prefix, self.where = client, prefix, where
        self.down: str | None = None  # why Redis cannot be used now, while it cannot
        self._probed = 0.0
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run commands: a Redis that cannot be reached becomes StoreError (and marks the store down)."""
        try:
            yield
        except _DOWN as exc:
            self.down = f"the Redis store at {self.where} cannot be reached now ({exc})"
            self._probed = time.monotonic()
            raise StoreError(self.down) from None
        self.down = None

    def run(self, name: str, *args: Any) -> Any:
        """Script `name` (service.storage.redis.scripts) with ARGV `prefix, *args`."""
        with self.guard():
            return self._scripts[name](args=[self.prefix, *args])

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

"""Recent pool counters, one sample a second per pool, in a bounded ring: what a dashboard that opens now
draws at once (the five-minute chart needs no page that was open for five minutes)."""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["HISTORY_SAMPLES", "History"]

HISTORY_SAMPLES = 330  # a little over five minutes at one sample a second
FIELDS = ("size", "running", "held", "free", "waiting", "queued")


class History:
    """Per pool, the last `HISTORY_SAMPLES` samples of its gauges (memory: a few dozen KiB per pool)."""

    def __init__(self, capacity: int = HISTORY_SAMPLES) -> None:
        self._rings: dict[str, deque[dict[str, Any]]] = {}
        self._capacity = capacity

    def record(self, pool: str, at: float, stats: dict[str, Any]) -> None:
        """Add a sample of `pool`'s gauges taken at `at` (wall-clock seconds); the oldest falls out."""
        ring = self._rings.get(pool)
        if ring is None:
            ring = self._rings[pool] = deque(maxlen=self._capacity)
        sample = {key: stats[key] for key in FIELDS}
        sample["t"] = round(at, 3)
        ring.append(sample)

    def samples(self, pool: str) -> list[dict[str, Any]]:
        """`pool`'s samples, oldest first (a copy)."""
        return list(self._rings.get(pool, ()))

    def forget(self, pool: str) -> None:
        """Drop a removed pool's samples."""
        self._rings.pop(pool, None)

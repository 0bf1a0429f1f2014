"""Outcomes of attempts that ended while the store could not be written (Redis unreachable, design §8).

A lane ends its jobs through `HeldOutcomes.end`: if the store raises StoreError, the outcome is kept in
memory (at most `limit`, the oldest dropped with a warning: that job then stays `running` in the store
until a restart's recovery or its lease ends it) and the engine's sweeper `write`s the held ones, in order,
once the store answers again. Ending a job is a compare-and-set, so an outcome written late still loses to
whatever ended the job meanwhile (a cancel on another replica).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..storage import Job, StoreError

__all__ = ["HeldOutcomes"]

log = logging.getLogger("greenpool.jobs")


class HeldOutcomes:
    """`end(job, status, …)` as the engine's `_end`, holding what the store cannot take now."""

    def __init__(self, end: Callable[..., bool], limit: int = 10_000) -> None:
        self._end = end
        self.limit = limit
        self._held: deque[tuple[Job, tuple[Any, ...]]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def end(self, job: Job, status: str, error_type: str | None = None, message: str | None = None,
            result: Any = None) -> bool:  # fmt: skip
        outcome = (status, error_type, message, result)
        if not self._held:
            try:
                return self._end(job, *outcome)
            except StoreError:
                pass
        self._held.append((job, outcome))
        if len(self._held) > self.limit:
            lost, _ = self._held.popleft()
            log.warning("outcome dropped: too many held while the store is down", extra={"job_id": lost.id})
        return True

    def write(self) -> None:
        """Write the held outcomes, oldest first; StoreError (the rest stay held) if the store is still down."""
        held = self._held
        while held:
            job, outcome = held[0]
            self._end(job, *outcome)
            held.popleft()

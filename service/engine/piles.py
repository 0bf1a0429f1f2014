"""Piles: a group of jobs whose results are read as a stream, in completion or submission order.

A pile keeps a log of result records in the order its jobs finished; a record's position in that log is
its stream position (the SSE event id), so any number of readers can follow, drop and resume the same
stream with no gap and no duplicate. `order="submitted"` instead follows the jobs' own positions, like
`imap`. A stream ends once the pile is closed and every job has a record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pool_core import Event

from .jobs import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT, Job

__all__ = ["Pile"]

COMPLETION, SUBMITTED = "completion", "submitted"


class Pile:
    """The jobs of one pile, its completion log, and the readers waiting for the log to grow."""

    def __init__(self, pile_id: str, owner: str | None = None) -> None:
        self.id = pile_id
        self.owner = owner
        self.jobs: list[Job] = []
        self.closed = False
        self.log: list[Job] = []  # jobs in the order they finished
        self._position: dict[str, int] = {}  # job id → its index in the pile
        self._counts = {SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self._changed = Event()
        self.finished_at: float | None = None
        self.readers = 0  # streams open on this pile now

    # -- written by the engine ------------------------------------------------------------------
    def add(self, job: Job) -> None:
        """Append a job (its index is its position in the pile)."""
        self._position[job.id] = len(self.jobs)
        self.jobs.append(job)

    def job_ended(self, job: Job) -> None:
        """Record a finished job and wake the readers."""
        self.log.append(job)
        self._counts[job.status] += 1
        self._notify()

    def _notify(self) -> None:
        if self.finished_at is None and self.complete:
            self.finished_at = time.time()
        changed, self._changed = self._changed, Event()
        changed.send(None)

    def close(self) -> None:
        """No more jobs will be added; streams end once every job has a record."""
        self.closed = True
        self._notify()

    # -- read by resources ----------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Closed, and every job has ended."""
        return self.closed and len(self.log) == len(self.jobs)

    def index_of(self, job: Job) -> int:
        return self._position[job.id]

    def summary(self) -> dict[str, Any]:
        """Size and progress: `size, done, succeeded, failed, cancelled, timed_out, pending, closed`."""
        done = len(self.log)
        return {
            "id": self.id,
            "size": len(self.jobs),
            "done": done,
            **self._counts,
            "pending": len(self.jobs) - done,
            "closed": self.closed,
            "readers": self.readers,
        }

    def record(self, job: Job) -> dict[str, Any]:
        """The stream record of a finished job."""
        return {
            "index": self._position[job.id],
            "job_id": job.id,
            "status": job.status,
            "result": job.result,
            "error": job.error,
        }

    def follow(
        self, order: str = COMPLETION, after: int = -1, heartbeat: float | None = None
    ) -> Iterator[list[tuple[int, dict]]]:
        """Yield batches of `(position, record)` from stream position `after + 1` on, parking for new
        results in between; an empty batch after `heartbeat` idle seconds lets the caller keep the
        connection alive. Batches let one socket write carry every record that is ready."""
        position = after + 1
        while True:
            changed = self._changed
            if order == COMPLETION:
                end = len(self.log)
                batch = [(p, self.record(self.log[p])) for p in range(position, end)]
            else:
                jobs, end = self.jobs, position
                while end < len(jobs) and jobs[end].ended:
                    end += 1
                batch = [(p, self.record(jobs[p])) for p in range(position, end)]
            position = max(position, end)  # a resume may start beyond what is written so far
            if batch:
                yield batch
            if self.closed and position >= len(self.jobs):
                return
            changed.wait(heartbeat)  # returns at once if results arrived while the batch was written
            if not changed.ready():
                yield []

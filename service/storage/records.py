"""The records the stores keep: plain data (no green threads, no events), changed only through the ports.

A `Job` is one accepted `{task, args}` on its way through `queued → running → terminal`; a `Pile` is a
group of jobs, its members in submission order and its result log in completion order.
"""

from __future__ import annotations

import math
import time
from typing import Any

__all__ = [
    "CANCELLED", "COMPLETION", "EVICTED", "FAILED", "MAX_ATTEMPTS_KEPT", "QUEUED", "RUNNING", "STATUSES",
    "SUBMITTED", "SUCCEEDED", "TERMINAL", "TIMED_OUT", "Evicted", "Job", "Pile", "rfc3339",
]  # fmt: skip

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)
STATUSES = (QUEUED, RUNNING, *TERMINAL)
COMPLETION, SUBMITTED = "completion", "submitted"  # the two orders a pile's results are read in
MAX_ATTEMPTS_KEPT = 10  # earlier attempts a job shows (the last ones)
EVICTED = "evicted"  # the status of a result record whose job record was evicted (its error type: ResultEvicted)

_last_second: tuple[float, str] = (math.nan, "")  # the last whole second formatted, as "YYYY-MM-DDTHH:MM:SS"


def rfc3339(ts: float | None) -> str | None:
    """A UTC RFC 3339 timestamp with milliseconds, or None: `datetime.fromtimestamp(ts, UTC)` formatted with
    `isoformat(timespec="milliseconds")` and "Z", with the date and time of day cached per second."""
    global _last_second
    if ts is None:
        return None
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)  # as datetime does: to the microsecond, half to even; then truncated to ms
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second = _last_second
    if whole != second[0]:
        second = _last_second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{micros // 1000:03d}Z"


class Job:
    """One job's record. Its state changes only through `JobQueue.take` and `JobRecords.finish`."""

    __slots__ = (
        "id", "seq", "task", "args", "timeout", "pool", "pile", "pile_index", "position", "owner", "status",
        "result", "error", "submitted_at", "started_at", "finished_at", "retries", "backoff", "attempt", "attempts",
        "not_before", "__weakref__",  # a shared store's identity map holds records weakly
    )  # fmt: skip

    def __init__(self, job_id: str, task: str, args: dict, timeout: float | None, submitted_at: float,
                 pool: str = "default", pile: str | None = None, owner: str | None = None) -> None:  # fmt: skip
        self.id = job_id
        self.seq = 0  # submission order, the list cursor: assigned by `JobRecords.add`
        self.task = task
        self.args = args
        self.timeout = timeout
        self.pool = pool
        self.pile = pile
        self.pile_index = -1  # its position in its pile (set when added to one)
        self.position = -1  # its position in its pile's result log (set when logged there)
        self.owner = owner
        self.status = QUEUED
        self.result: Any = None
        self.error: dict[str, str] | None = None
        self.submitted_at = submitted_at
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.retries = 0  # more attempts allowed after the first (design §3)
        self.backoff = 1.0  # retry_backoff: seconds before the second attempt, doubling after each later one
        self.attempt = 1  # 1-based: the attempt running, or about to
        self.attempts: list[dict[str, Any]] | None = None  # the earlier attempts (the last MAX_ATTEMPTS_KEPT)
        self.not_before: float | None = None  # wall-clock seconds before which it must not start (delay, retry)

    def queue_seconds(self) -> float | None:
        """Seconds it waited in the queue since it was due (None if it has not started)."""
        if self.started_at is None:
            return None
        return self.started_at - (self.submitted_at if self.not_before is None else self.not_before)

    def run_seconds(self) -> float | None:
        """Seconds it ran (None if it never started or has not ended)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def requeue(self, status: str, error: dict[str, str] | None, at: float, not_before: float) -> None:
        """The attempt that was running ended `status` at `at`: keep it in `attempts` and make the job `queued`
        for its next attempt, not before `not_before` (for a store's `JobRecords.retry`)."""
        ended = {"status": status, "error": error, "started_at": rfc3339(self.started_at), "finished_at": rfc3339(at)}
        self.attempts = [*(self.attempts or ())[1 - MAX_ATTEMPTS_KEPT :], ended]
        self.attempt += 1
        self.status = QUEUED
        self.started_at = None
        self.not_before = not_before

    def to_dict(self) -> dict[str, Any]:
        """The job's public representation (design.md §4)."""
        return {
            "id": self.id,
            "task": self.task,
            "args": self.args,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "pile": self.pile,
            "pool": self.pool,
            "timeout": self.timeout,
            "attempt": self.attempt,
            "retries": self.retries,
            "retry_backoff": self.backoff,
            "attempts": self.attempts or [],
            "not_before": rfc3339(self.not_before),
            "submitted_at": rfc3339(self.submitted_at),
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }

    def result_record(self) -> dict[str, Any]:
        """Its record in its pile's result stream."""
        return {
            "index": self.pile_index,
            "job_id": self.id,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }


class Evicted:
    """What a pile keeps of a member whose job record the store evicted (GREENPOOL_MAX_RECORDS): who it was
    and how it ended, not its result; so stream positions keep their meaning at a few dozen bytes."""

    __slots__ = ("pile_index", "id", "status", "started_at", "finished_at")

    def __init__(self, job: Job) -> None:
        self.pile_index = job.pile_index
        self.id = job.id
        self.status = job.status
        self.started_at = job.started_at
        self.finished_at = job.finished_at

    def result_record(self) -> dict[str, Any]:
        """Its record in its pile's result stream: status `evicted`, no result, how it ended in the message."""
        message = (f"the job ended {self.status}, but its record was evicted (GREENPOOL_MAX_RECORDS) before this "
                   "stream reached it")  # fmt: skip
        return {"index": self.pile_index, "job_id": self.id, "status": EVICTED, "result": None,
                "error": {"type": "ResultEvicted", "message": message},
                "started_at": rfc3339(self.started_at), "finished_at": rfc3339(self.finished_at)}  # fmt: skip


class Pile:
    """One pile's record: its jobs (index = position), its result log (completion order), closed or not.

    A member whose job record the store evicted (GREENPOOL_MAX_RECORDS) is an `Evicted` in `jobs` and `log`."""

    __slots__ = ("id", "owner", "closed", "jobs", "log", "counts", "finished_at", "active_at", "__weakref__")

    def __init__(self, pile_id: str, owner: str | None = None, created_at: float = 0.0) -> None:
        self.id = pile_id
        self.owner = owner
        self.closed = False
        self.jobs: list[Job | Evicted] = []
        self.log: list[Job | Evicted] = []  # ended jobs in the order they ended: a record's index is its position
        self.counts = {SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self.finished_at: float | None = None  # when it became complete
        self.active_at = created_at  # its last activity: created, a member added, a result logged, closed

    @property
    def size(self) -> int:
        return len(self.jobs)

    @property
    def complete(self) -> bool:
        """Closed, and every job has ended."""
        return self.closed and len(self.log) == len(self.jobs)

    def summary(self) -> dict[str, Any]:
        """Size and progress: `size, done, succeeded, failed, cancelled, timed_out, pending, closed`."""
        done = len(self.log)
        return {
            "id": self.id,
            "size": len(self.jobs),
            "done": done,
            **self.counts,
            "pending": len(self.jobs) - done,
            "closed": self.closed,
        }

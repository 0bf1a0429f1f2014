"""The job record: one accepted `{task, args}` and its way through `queued → running → terminal`."""

from __future__ import annotations

import math
import time
from typing import Any

from pool_core import Event

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)
STATUSES = (QUEUED, RUNNING, *TERMINAL)


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
    """One job. Only the engine changes it; `finish` is the single way into a terminal state."""

    __slots__ = (
        "id", "seq", "task", "args", "status", "result", "error", "pile", "timeout", "owner",
        "submitted_at", "started_at", "finished_at", "_mono_submitted", "_mono_started", "_done", "thread",
    )  # fmt: skip

    def __init__(self, job_id: str, seq: int, task: str, args: dict, timeout: float | None,
                 pile: str | None = None, owner: str | None = None) -> None:  # fmt: skip
        self.id = job_id
        self.seq = seq
        self.task = task
        self.args = args
        self.timeout = timeout
        self.pile = pile
        self.owner = owner
        self.status = QUEUED
        self.result: Any = None
        self.error: dict[str, str] | None = None
        self.submitted_at = time.time()
        self._mono_submitted = time.monotonic()
        self.started_at: float | None = None
        self._mono_started: float | None = None
        self.finished_at: float | None = None
        self._done: Event | None = None
        self.thread: Any = None  # the GreenThread while running

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def start(self) -> float:
        """Mark running; returns the seconds it waited in the queue."""
        self.status = RUNNING
        self.started_at = time.time()
        self._mono_started = time.monotonic()
        return self._mono_started - self._mono_submitted

    def finish(self, status: str, result: Any = None, error: dict[str, str] | None = None) -> bool:
        """Enter terminal `status` once; False (and no change) if the job had already ended."""
        if self.status in TERMINAL:
            return False
        self.status = status
        self.result = result
        self.error = error
        self.finished_at = time.time()
        self.thread = None
        if self._done is not None:
            self._done.send(None)
        return True

    def run_seconds(self) -> float | None:
        """Seconds spent running (None if it never started)."""
        if self._mono_started is None:
            return None
        return time.monotonic() - self._mono_started

    def wait(self, timeout: float) -> bool:
        """Park until the job ends or `timeout` passes; True if it has ended."""
        if self.status in TERMINAL or timeout <= 0:
            return self.status in TERMINAL
        if self._done is None:
            self._done = Event()
        self._done.wait(timeout)
        return self.status in TERMINAL

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
            "timeout": self.timeout,
            "submitted_at": rfc3339(self.submitted_at),
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }

"""Job options (design §3): a job's retry policy and delay, and the wait before its next attempt.

A job gets `retries` more attempts after one that failed, timed out or was lost (`WorkerLost`); before
attempt n+1 it waits `uniform(0.5, 1) × min(max_backoff, retry_backoff × 2^(n−1))` seconds, `queued` with
`not_before` set. `retries` and `retry_backoff` default to the task's (`@task(retries=…, retry_backoff=…)`),
else 0 and 1 s. `delay` sets `not_before` at submission. Cancelling is never retried.
"""

from __future__ import annotations

import random
import sys
from typing import TYPE_CHECKING, NamedTuple

from ..storage import Job
from ..storage.ports import JobRecords
from ..storage.records import FAILED, TIMED_OUT
from ..tasks import Task

if TYPE_CHECKING:
    from .runner import Lane

__all__ = ["RETRIED", "RETRYING", "JobOptions", "apply_options", "backoff", "requeue"]

RETRIED = (FAILED, TIMED_OUT)  # the ends of an attempt that another attempt may follow
RETRYING = "retrying"  # the observers' event: an attempt ended and the job is queued for the next one


class JobOptions(NamedTuple):
    """What a request asked of one job beyond task, args and timeout (None: not given, the default applies)."""

    retries: int | None = None
    retry_backoff: float | None = None
    delay: float | None = None


def apply_options(job: Job, task: Task, options: JobOptions | None, max_retries: int, now: float) -> None:
    """Give a new job its retry policy (its own, else its task's) and its `not_before` (`now + delay`)."""
    if options is None:
        if task.retries:
            job.retries, job.backoff = min(task.retries, max_retries), task.retry_backoff
        return
    retries, retry_backoff, delay = options
    job.retries = min(task.retries, max_retries) if retries is None else retries
    job.backoff = task.retry_backoff if retry_backoff is None else retry_backoff
    if delay:
        job.not_before = now + delay


def backoff(job: Job, max_backoff: float) -> float:
    """Seconds to wait before the attempt after `job.attempt` (the one that just ended)."""
    return random.uniform(0.5, 1.0) * min(max_backoff, job.backoff * 2.0 ** min(job.attempt - 1, 64))


def requeue(jobs: JobRecords, lane: Lane, job: Job, status: str, error: dict[str, str] | None, now: float,
            max_backoff: float, kill: bool = False) -> bool:  # fmt: skip
    """Send running `job`, whose attempt ended `status` at `now`, back to its lane's queue until its backoff
    has passed (`kill`: and kill the green thread still running it); False if it was not running."""
    if not jobs.retry(job, status, error, now, now + backoff(job, max_backoff)):
        return False
    queue = lane.queue
    queue.reserve(1, sys.maxsize)  # an accepted job's next attempt is never refused
    queue.push(job)
    lane.delayed(job.not_before)
    if kill:
        lane.kill(job.id)
    return True

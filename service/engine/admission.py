"""Admission: whether new jobs may enter (draining, the queue bound) and whether they are valid.

The order of the checks is part of the contract: draining, then a request too large ever to fit (the queue,
then one client's share of it), then a queue with no room now, then a client with no room now, then the jobs'
tasks and arguments. Room is taken last, the client's share and then the queue's compare-and-set `reserve`
with no yield in between, so two submissions can never both take the last place.

A client (its token's name, else its address: the API decides) may have at most `max_queued_per_client` jobs
queued at once (0: three quarters of `max_queued`); its count goes down as each job leaves the queue.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import Config
from ..storage import JobQueue
from ..tasks import InvalidArguments as BadTaskArguments
from ..tasks import Registry
from ..tasks import UnknownTask as NoSuchTask
from .errors import Draining, FieldError, InvalidArguments, QueueFull, TooLarge, UnknownTask
from .retries import JobOptions

__all__ = ["Admission", "JobSpec"]

# (task, args, timeout) or (task, args, timeout, options): options None or absent, the defaults
JobSpec = tuple[str, Any, float | None] | tuple[str, Any, float | None, JobOptions | None]
_RATE_WEIGHT = 0.3  # how much one sweep's finish rate moves the smoothed rate behind Retry-After


class Admission:
    """The gate in front of the queues: draining, the bound `max_queued`, task and argument validation."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.draining = False
        self.ended = 0  # jobs ended since the last `tick`
        self._finish_rate = 0.0  # jobs/s, smoothed
        self.per_client = config.max_queued_per_client or max(1, config.max_queued * 3 // 4)
        self._queued_by: dict[str, int] = {}  # client -> its jobs in the queue (or reserved for it)
        self._client_of: dict[str, str] = {}  # queued job id -> its client

    def check(self, queue: JobQueue, count: int, client: str | None = None) -> None:
        """Raise Draining, TooLarge or QueueFull unless `count` more jobs could enter `queue` now for `client`
        (None: no per-client share applies)."""
        if self.draining:
            raise Draining()
        limit, share = self.config.max_queued, self.per_client
        if count > limit:  # could never be accepted: not a matter of retrying later
            raise TooLarge(f"{count} jobs in one request; the queue holds at most {limit}", limit)
        if client is not None and count > share:
            raise TooLarge(f"{count} jobs in one request; one client may have at most {share} queued", share)
        queued = queue.queued + queue.delayed
        if queued + count > limit:
            raise QueueFull(queued, count, limit, self.retry_after(queued + count - limit))
        if client is not None:
            self._check_client(client, count)

    def reserve(self, queue: JobQueue, count: int, client: str | None = None) -> None:
        """Take room for `count` jobs in `queue` (compare-and-set) and in `client`'s share; QueueFull if another
        submission took it."""
        if client is not None:
            self._check_client(client, count)
            self._queued_by[client] = self._queued_by.get(client, 0) + count
        if not queue.reserve(count, self.config.max_queued):
            if client is not None:
                self._give_back(client, count)
            queued, limit = queue.queued + queue.delayed, self.config.max_queued
            raise QueueFull(queued, count, limit, self.retry_after(queued + count - limit))

    def queued(self, job_id: str, client: str | None) -> None:
        """Job `job_id`, reserved for `client` by `reserve`, is in the queue now."""
        if client is not None:
            self._client_of[job_id] = client

    def left_queue(self, job_id: str) -> None:
        """Job `job_id` started or ended: it no longer counts against its client (harmless twice)."""
        client = self._client_of.pop(job_id, None)
        if client is not None:
            self._give_back(client, 1)

    def retry_after(self, excess: int = 1) -> int:
        """Seconds until `excess` more jobs have likely left the queue (1..60)."""
        rate = max(self._finish_rate, 1e-3)
        return int(min(60, max(1, math.ceil(excess / rate))))

    def _check_client(self, client: str, count: int) -> None:
        queued, share = self._queued_by.get(client, 0), self.per_client
        if queued + count > share:
            raise QueueFull(queued, count, share, self.retry_after(queued + count - share), "this client has ")

    def _give_back(self, client: str, count: int) -> None:
        left = self._queued_by[client] - count
        if left > 0:
            self._queued_by[client] = left
        else:
            del self._queued_by[client]

    def tick(self, interval: float) -> None:
        """Fold the jobs ended in the last `interval` seconds into the finish rate."""
        self._finish_rate = (1 - _RATE_WEIGHT) * self._finish_rate + _RATE_WEIGHT * (self.ended / interval)
        self.ended = 0

    def validate(self, task: str, args: Any) -> dict:
        """The task's normalised arguments for one job; UnknownTask or InvalidArguments."""
        try:
            spec = self.registry.get(task)
        except NoSuchTask:
            raise UnknownTask(task, [t["name"] for t in self.registry.describe()]) from None
        try:
            return spec.validate(args)
        except BadTaskArguments as exc:
            raise InvalidArguments([_arg_error(None, e) for e in exc.errors], task) from None

    def validate_all(self, specs: list[JobSpec]) -> list[tuple[str, dict, float | None, JobOptions | None]]:
        """Every spec as (task, normalised args, timeout, options); InvalidArguments naming every wrong field of
        every job."""
        checked, errors = [], []
        for index, (task, args, timeout, *options) in enumerate(specs):
            try:
                checked.append((task, self.validate(task, args), timeout, options[0] if options else None))
            except UnknownTask as exc:
                errors.append(FieldError(index, "task", exc.errors[0].message))
            except InvalidArguments as exc:
                errors.extend(FieldError(index, e.field, e.message) for e in exc.errors)
        if errors:
            raise InvalidArguments(errors)
        return checked


def _arg_error(index: int | None, error: dict[str, str]) -> FieldError:
    """A task's `{field, message}` (field relative to args) as a field of the job."""
    return FieldError(index, f"args.{error['field']}" if error["field"] else "args", error["message"])

"""Admission: whether new jobs may enter (draining, the queue bound) and whether they are valid.

The order of the checks is part of the contract: draining, then a request too large ever to fit, then a
queue with no room now, then the jobs' tasks and arguments. Room is taken last, with the queue's
compare-and-set `reserve`, so two submissions can never both take the last place.
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

__all__ = ["Admission", "JobSpec"]

JobSpec = tuple[str, Any, float | None]  # (task, args, timeout)
_RATE_WEIGHT = 0.3  # how much one sweep's finish rate moves the smoothed rate behind Retry-After


class Admission:
    """The gate in front of the queues: draining, the bound `max_queued`, task and argument validation."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.draining = False
        self.ended = 0  # jobs ended since the last `tick`
        self._finish_rate = 0.0  # jobs/s, smoothed

    def check(self, queue: JobQueue, count: int) -> None:
        """Raise Draining, TooLarge or QueueFull unless `count` more jobs could enter `queue` now."""
        if self.draining:
            raise Draining()
        limit = self.config.max_queued
        if count > limit:  # could never be accepted: not a matter of retrying later
            raise TooLarge(f"{count} jobs in one request; the queue holds at most {limit}", limit)
        queued = queue.queued
        if queued + count > limit:
            raise QueueFull(queued, count, limit, self.retry_after(queue, count))

    def reserve(self, queue: JobQueue, count: int) -> None:
        """Take room for `count` jobs in `queue` (compare-and-set); QueueFull if another submission took it."""
        if not queue.reserve(count, self.config.max_queued):
            raise QueueFull(queue.queued, count, self.config.max_queued, self.retry_after(queue, count))

    def retry_after(self, queue: JobQueue, count: int = 1) -> int:
        """Seconds until `queue` has likely drained enough to accept `count` jobs (1..60)."""
        rate = max(self._finish_rate, 1e-3)
        return int(min(60, max(1, math.ceil((queue.queued + count - self.config.max_queued) / rate))))

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

    def validate_all(self, specs: list[JobSpec]) -> list[JobSpec]:
        """Every spec with normalised arguments; InvalidArguments naming every wrong field of every job."""
        checked, errors = [], []
        for index, (task, args, timeout) in enumerate(specs):
            try:
                checked.append((task, self.validate(task, args), timeout))
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

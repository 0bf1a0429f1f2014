"""Admission: whether new jobs may enter (draining, the queue bound) and whether they are valid.

The order of the checks is part of the contract: draining, then a request too large ever to fit (the queue,
then one client's share of it), then a queue with no room now, then a client with no room now, then the jobs'
tasks and arguments. Room is taken last, the client's share and then the queue's compare-and-set `reserve`
with no yield in between, so two submissions can never both take the last place.

Each named pool (a `Gate`: its queue and its finish rate) has its own bound `max_queued` and Retry-After. A
client (its token's name, else its address: the API decides) may have at most `max_queued_per_client` jobs
queued in one pool at once (0: three quarters of `max_queued`); its count goes down as each job leaves the queue.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

from ..config import Config
from ..storage import JobQueue
from ..tasks import InvalidArguments as BadTaskArguments
from ..tasks import Registry
from ..tasks import UnknownTask as NoSuchTask
from .errors import Draining, FieldError, InvalidArguments, QueueFull, TooLarge, UnknownTask

__all__ = ["Admission", "Gate", "JobSpec"]

_RATE_WEIGHT = 0.3  # how much one sweep's finish rate moves the smoothed rate behind Retry-After


class JobSpec(NamedTuple):
    """One job of a request: its task, args, timeout and pool (None: the task's, else `default`)."""

    task: str
    args: Any
    timeout: float | None = None
    pool: str | None = None


class Gate(Protocol):
    """What admission reads of one pool: its name, its queue, jobs ended since the last `tick`, finish rate."""

    name: str
    queue: JobQueue
    ended: int
    finish_rate: float


class Admission:
    """The gate in front of the queues: draining, the bound `max_queued`, task and argument validation."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.draining = False
        self.per_client = config.max_queued_per_client or max(1, config.max_queued * 3 // 4)
        self._queued_by: dict[Any, int] = {}  # (pool, client) -> its jobs in that queue (or reserved for it)
        self._client_of: dict[str, Any] = {}  # queued job id -> its (pool, client)

    def check(self, gate: Gate, count: int, client: str | None = None) -> None:
        """Raise Draining, TooLarge or QueueFull unless `count` more jobs could enter the pool's queue now for
        `client` (None: no per-client share applies)."""
        if self.draining:
            raise Draining()
        limit, share = self.config.max_queued, self.per_client
        if count > limit:  # could never be accepted: not a matter of retrying later
            raise TooLarge(f"{count} jobs in one request; the queue holds at most {limit}", limit)
        if client is not None and count > share:
            raise TooLarge(f"{count} jobs in one request; one client may have at most {share} queued", share)
        queued = gate.queue.queued
        if queued + count > limit:
            raise QueueFull(queued, count, limit, self.retry_after(queued + count - limit, gate))
        if client is not None:
            self._check_client(gate, client, count)

    def reserve(self, gate: Gate, count: int, client: str | None = None) -> None:
        """Take room for `count` jobs in the pool's queue (compare-and-set) and in `client`'s share; QueueFull
        if another submission took it."""
        if client is not None:
            self._check_client(gate, client, count)
            key = (gate.name, client)
            self._queued_by[key] = self._queued_by.get(key, 0) + count
        queue = gate.queue
        if not queue.reserve(count, self.config.max_queued):
            if client is not None:
                self._give_back((gate.name, client), count)
            queued, limit = queue.queued, self.config.max_queued
            raise QueueFull(queued, count, limit, self.retry_after(queued + count - limit, gate))

    def check_all(self, groups: dict[Any, int], client: str | None = None) -> None:
        """`check` for each pool (`Gate`) of a request and the count of its jobs going there."""
        for gate, count in groups.items():
            self.check(gate, count, client)

    def reserve_all(self, groups: dict[Any, int], client: str | None = None) -> None:
        """`reserve` in each pool of a request, all or none (QueueFull gives back what was taken)."""
        taken: list[tuple[Gate, int]] = []
        try:
            for gate, count in groups.items():
                self.reserve(gate, count, client)
                taken.append((gate, count))
        except QueueFull:
            for gate, count in taken:
                gate.queue.release(count)
                if client is not None:
                    self._give_back((gate.name, client), count)
            raise

    def queued(self, job_id: str, gate: Gate, client: str | None) -> None:
        """Job `job_id`, reserved for `client` in the pool by `reserve`, is in its queue now."""
        if client is not None:
            self._client_of[job_id] = (gate.name, client)

    def left_queue(self, job_id: str) -> None:
        """Job `job_id` started or ended: it no longer counts against its client (harmless twice)."""
        key = self._client_of.pop(job_id, None)
        if key is not None:
            self._give_back(key, 1)

    def retry_after(self, excess: int, gate: Gate) -> int:
        """Seconds until `excess` more jobs have likely left the pool's queue (1..60), at its finish rate."""
        rate = max(gate.finish_rate, 1e-3)
        return int(min(60, max(1, math.ceil(excess / rate))))

    def _check_client(self, gate: Gate, client: str, count: int) -> None:
        queued, share = self._queued_by.get((gate.name, client), 0), self.per_client
        if queued + count > share:
            retry = self.retry_after(queued + count - share, gate)
            raise QueueFull(queued, count, share, retry, "this client has ")

    def _give_back(self, key: Any, count: int) -> None:
        left = self._queued_by[key] - count
        if left > 0:
            self._queued_by[key] = left
        else:
            del self._queued_by[key]

    @staticmethod
    def tick(gates: Any, interval: float) -> None:
        """Fold the jobs each pool ended in the last `interval` seconds into its finish rate."""
        for gate in gates:
            gate.finish_rate = (1 - _RATE_WEIGHT) * gate.finish_rate + _RATE_WEIGHT * (gate.ended / interval)
            gate.ended = 0

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
        for index, spec in enumerate(specs):
            task = spec.task
            try:
                checked.append(spec._replace(args=self.validate(task, spec.args)))
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

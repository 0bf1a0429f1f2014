"""The engine's errors: what went wrong, with the data a caller needs to act on it. They speak no HTTP
(`service.api.errors` maps each to its problem document); the message is for people."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Draining", "EngineError", "FieldError", "InvalidArguments", "JobAlreadyEnded", "JobNotFound", "PileClosed",
    "PileNotFound", "PoolInUse", "PoolNotFound", "QueueFull", "StoreUnavailable", "TooLarge", "UnknownPool",
    "UnknownTask",
]  # fmt: skip


class EngineError(Exception):
    """Base of every error the engine raises to its callers."""


class QueueFull(EngineError):
    """The pool's queue (or one client's share of it, `whose`) has no room for `count` more jobs now;
    `retry_after` seconds is a fair wait."""

    def __init__(self, queued: int, count: int, limit: int, retry_after: int, whose: str = "") -> None:
        super().__init__(
            f"{whose}{queued} jobs queued and {count} more would pass the limit of {limit}; retry later"
        )
        self.queued, self.count, self.limit, self.retry_after = queued, count, limit, retry_after


class TooLarge(EngineError):
    """More jobs in one request than could ever be accepted (`limit`): retrying will not help."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class Draining(EngineError):
    """The engine is draining (shutting down) and accepts no new work."""

    def __init__(self) -> None:
        super().__init__("The server is shutting down and accepts no new work.")


class StoreUnavailable(EngineError):
    """The store cannot take new work now (it cannot commit, or it is full); `retry_after` s is a fair wait.
    What it already accepted is kept, and it recovers by itself when the condition clears."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(f"{reason}; retry later")
        self.retry_after = retry_after


class JobNotFound(EngineError):
    """No job with this id (unknown, or its record expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (unknown, or its record has expired)")
        self.job_id = job_id


class PileNotFound(EngineError):
    """No pile with this id (unknown, or its records expired)."""

    def __init__(self, pile_id: str) -> None:
        super().__init__(f"no pile with id {pile_id!r} (unknown, or its records have expired)")
        self.pile_id = pile_id


class JobAlreadyEnded(EngineError):
    """The job had already reached terminal `status` (a cancel came too late)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} already ended with status {status!r}")
        self.job_id, self.status = job_id, status


class PileClosed(EngineError):
    """The pile is closed: no more jobs can join it."""

    def __init__(self, pile_id: str) -> None:
        super().__init__(f'pile {pile_id} is closed; create a new pile or open one with "open": true')
        self.pile_id = pile_id


class PoolNotFound(EngineError):
    """No pool with this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no pool named {name!r}; PUT /v1/pools/{name} creates it")
        self.name = name


class PoolInUse(EngineError):
    """The pool cannot be deleted: it is `default`, or it has jobs queued or running."""

    def __init__(self, name: str, running: int, queued: int) -> None:
        if name == "default":
            message = "the default pool always exists: it cannot be deleted (resize it to 0 to pause it)"
        else:
            message = f"pool {name!r} has {running} jobs running and {queued} queued: delete it once it is idle"
        super().__init__(message)
        self.name, self.running, self.queued = name, running, queued


@dataclass(frozen=True, slots=True)
class FieldError:
    """One wrong field of job number `index` of a request (None: the request has one job), named relative to
    that job: `task`, `args`, or `args.<name>`."""

    index: int | None
    field: str
    message: str


class UnknownTask(EngineError):
    """The one job of a request names no registered task; `known` lists those that are."""

    def __init__(self, task: str, known: list[str]) -> None:
        super().__init__(f"no task named {task!r} is registered (known: {', '.join(known)})")
        self.task, self.known = task, known
        self.errors = [FieldError(None, "task", f"unknown task {task!r}")]


class InvalidArguments(EngineError):
    """Jobs whose task is unknown or whose args do not fit its signature; `errors` names every wrong field.
    `task` is the task of a single job's request (None for a batch)."""

    def __init__(self, errors: list[FieldError], task: str | None = None) -> None:
        super().__init__(f"invalid arguments: {', '.join(e.field for e in errors[:5])}")
        self.errors, self.task = errors, task


class UnknownPool(InvalidArguments):
    """A job names (or its task declares) a pool that does not exist; job `index` of a batch (None: one job)."""

    def __init__(self, pool: str, known: list[str], index: int | None = None) -> None:
        message = f"unknown pool {pool!r} (known: {', '.join(known)})"
        super().__init__([FieldError(index, "pool", message)])
        self.pool, self.known = pool, known
        self.args = (message,)

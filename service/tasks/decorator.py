"""The `@task` decorator: marks a function as a task; registries collect marked functions from modules.

Marking rather than registering keeps the decorator free of global state: a plugin module can be loaded
into any number of registries (one per engine, one per test), and only the registry that loads it sees
its tasks. See `Registry.load_module`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import POOL_NAME
from .errors import InvalidArguments, TaskDefinitionError

__all__ = ["MARK", "TaskSpec", "task", "spec_of"]

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute `@task` sets on a function: its TaskSpec.
MARK = "__greenpool_task__"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True)
class TaskSpec:
    """How a function is exposed: its task name, whether it runs on the hub, its description, an extra check."""

    name: str
    #: True: the function only waits cooperatively (pool_core sockets, sleep, events) and runs on the hub;
    #: False (the default): it may block, so it runs on an OS thread.
    cooperative: bool = False
    description: str = ""
    #: Called with the normalised kwargs after type checks; raises InvalidArguments for cross-field rules.
    check: Callable[[dict[str, Any]], None] | None = None
    #: The named pool its jobs run in unless a job names another (None: `default`).
    pool: str | None = None


def task(
    name: str | Callable[..., Any] | None = None,
    blocking: bool | None = None,
    description: str | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
    cooperative: bool = False,
    pool: str | None = None,
) -> Any:
    """Mark a function as a task: `@task()`, `@task(name="x", cooperative=True)`, or bare `@task`.

    A task runs on an OS thread unless it says `cooperative=True` (it never blocks the hub: it waits only
    through pool_core); `blocking=True` is the explicit spelling of the default. `pool` names the pool its
    jobs run in unless a job names another."""
    if callable(name):  # bare @task
        return task()(name)

    def mark(fn: F) -> F:
        if not callable(fn):
            raise TaskDefinitionError(f"@task needs a function, not {fn!r}")
        setattr(fn, MARK, make_spec(fn, name, description, check, cooperative=cooperative, blocking=blocking,
                                   pool=pool))  # fmt: skip
        return fn

    return mark


def make_spec(
    fn: Callable[..., Any],
    name: str | None = None,
    description: str | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
    *,
    cooperative: bool = False,
    blocking: bool | None = None,
    pool: str | None = None,
) -> TaskSpec:
    """A TaskSpec for `fn`, defaulting the name to the function's and the description to its docstring;
    `blocking` only restates the default (True) or the opposite of `cooperative`; `pool` is a pool name."""
    task_name = name or getattr(fn, "__name__", None)
    if not isinstance(task_name, str) or not NAME_RE.match(task_name):
        raise TaskDefinitionError(
            f"invalid task name {task_name!r}: letters, digits, '_', '.', ':' or '-', starting with a letter"
        )
    if description is None:
        doc = (getattr(fn, "__doc__", None) or "").strip()
        description = doc.splitlines()[0].strip() if doc else ""
    if blocking is not None and bool(blocking) == bool(cooperative):
        raise TaskDefinitionError(
            f"task {task_name!r}: blocking={blocking!r} contradicts cooperative={cooperative!r}; a task blocks "
            "(the default, on an OS thread) unless it says cooperative=True (on the hub)"
        )
    if pool is not None and not (isinstance(pool, str) and POOL_NAME.fullmatch(pool)):
        raise TaskDefinitionError(f"task {task_name!r}: pool={pool!r} is not a pool name (1-64 of a-z 0-9 _ -)")
    return TaskSpec(task_name, bool(cooperative), description, check, pool)


def spec_of(obj: Any) -> TaskSpec | None:
    """The TaskSpec `@task` attached to `obj`, if any."""
    spec = getattr(obj, MARK, None)
    return spec if isinstance(spec, TaskSpec) else None


def reject(field: str, message: str) -> None:
    """Raise InvalidArguments for one field (for `check` functions)."""
    raise InvalidArguments([{"field": field, "message": message}])

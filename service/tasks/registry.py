"""`Registry`: the tasks one engine may run, by name — built-ins, plugin modules and entry points.

Plugin modules mark functions with `@task`; `load_module` imports a module and registers every marked
function it exposes. Installed packages advertise plugin modules (or single functions) in the
`greenpool.tasks` entry-point group. Two different functions claiming one name is a startup error;
the same function reached twice (e.g. re-exported by a package) is registered once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from .builtins import echo, sleep
from .decorator import spec_of
from .errors import DuplicateTask, PluginError, UnknownTask
from .http.client import HttpClient
from .http.policy import HttpPolicy
from .taskdef import Task

__all__ = ["ENTRY_POINT_GROUP", "Registry"]

log = logging.getLogger("greenpool.tasks")

ENTRY_POINT_GROUP = "greenpool.tasks"


class Registry:
    """Tasks by name. Build the service's one with `Registry.with_builtins(...)`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def with_builtins(
        cls,
        http_allow: Iterable[str] | None = None,
        plugins: Iterable[str] = (),
        *,
        http_policy: HttpPolicy | None = None,
        entry_points: bool = True,
    ) -> Registry:
        """Built-ins (`sleep`, `echo`, `http`), then plugin modules, then `greenpool.tasks` entry points.

        `http_allow` adds CIDRs the `http` task may reach besides public addresses (e.g. `["127.0.0.0/8"]`);
        `http_policy` replaces the whole policy instead.
        """
        if http_policy is None:
            http_policy = HttpPolicy(allow=tuple(http_allow or ()))
        elif http_allow:
            raise ValueError("give either http_allow or http_policy, not both")
        registry = cls()
        registry.register(sleep)
        registry.register(echo)
        http = HttpClient(http_policy)
        registry.register(http.http, name="http", check=http.check, cooperative=True)
        registry.on_close(http.close)
        for module in plugins:
            registry.load_module(module)
        if entry_points:
            registry.load_entry_points()
        return registry

    # -- adding tasks -----------------------------------------------------------------------------
    def add(self, task: Task) -> Task:
        """Register `task`; DuplicateTask if another function already has its name."""
        existing = self._tasks.get(task.name)
        if existing is not None:
            if _same_function(existing.fn, task.fn):
                return existing
            raise DuplicateTask(
                f"task name {task.name!r} is registered twice: by {existing.source} and by {task.source}"
            )
        self._tasks[task.name] = task
        return task

    def register(self, fn: Callable[..., Any], **overrides: Any) -> Task:
        """Register a function (its `@task` mark, if any, with `overrides` such as name or cooperative)."""
        return self.add(Task.from_function(fn, **overrides))

    def load_module(self, module: str | ModuleType) -> list[str]:
        """Import `module` (a dotted name or a module) and register every `@task` function it exposes."""
        name = module if isinstance(module, str) else module.__name__
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except Exception as exc:
                raise PluginError(f"cannot import task plugin module {name!r}: {exc}") from exc
        names = [self.add(Task.from_function(obj)).name for obj in list(vars(module).values()) if spec_of(obj)]
        if not names:
            raise PluginError(f"task plugin module {name!r} defines no @task function")
        log.info("loaded task plugin module", extra={"plugin_module": name, "tasks": names})
        return names

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Load every entry point of `group`: each names a plugin module or one `@task` function."""
        names: list[str] = []
        for ep in importlib.metadata.entry_points(group=group):
            where = f"entry point {ep.name!r} ({ep.value}) in group {group!r}"
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(f"cannot load {where}: {exc}") from exc
            if isinstance(obj, ModuleType):
                try:
                    names.extend(self.load_module(obj))
                except PluginError as exc:
                    raise PluginError(f"{where}: {exc}") from exc
            elif spec_of(obj) is not None:
                names.append(self.add(Task.from_function(obj)).name)
            else:
                raise PluginError(f"{where} is neither a module nor a @task function: {obj!r}")
        return names

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call `fn` from `close()` (tasks holding resources, e.g. the http task's idle connections)."""
        self._closers.append(fn)

    def close(self) -> None:
        """Release the tasks' resources (idle connections); the registry stays usable."""
        for fn in self._closers:
            fn()

    # -- looking up -------------------------------------------------------------------------------
    def get(self, name: str) -> Task:
        """The task called `name`; UnknownTask if none is."""
        try:
            return self._tasks[name]
        except (KeyError, TypeError):
            raise UnknownTask(name) from None

    def pool_of(self, name: str) -> str | None:
        """The pool task `name` declares (`@task(pool=...)`); None if it declares none or is unknown."""
        task = self._tasks.get(name)
        return None if task is None else task.pool

    def names(self) -> list[str]:
        """Registered task names, sorted."""
        return sorted(self._tasks)

    def describe(self) -> list[dict[str, Any]]:
        """Each task's `describe()`, sorted by name, for `GET /v1/tasks`."""
        return [self._tasks[name].describe() for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter([self._tasks[name] for name in self.names()])

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<Registry {self.names()}>"


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True for one bound method reached twice (bound methods are new objects on each access)."""
    return getattr(a, "__func__", a) is getattr(b, "__func__", b) and getattr(a, "__self__", None) is getattr(
        b, "__self__", None
    )

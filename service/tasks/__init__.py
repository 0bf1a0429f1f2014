"""Tasks: the registry, the `@task` decorator for plugins, argument validation, and the built-in tasks.

    from service.tasks import task

    @task()
    def resize_image(path: str, width: int = 100) -> dict: ...

An engine builds its registry with `Registry.with_builtins(http_allow=[...], plugins=["pkg.mod"])`, then
`registry.get(name).validate(args)` before accepting a job and `task.run(args)` in the pool.
"""

from __future__ import annotations

from .decorator import TaskSpec, reject, task
from .errors import DuplicateTask, InvalidArguments, PluginError, TaskDefinitionError, UnknownTask
from .http.errors import (
    DestinationNotAllowed,
    HttpConnectError,
    HttpError,
    HttpProtocolError,
    HttpTimeout,
    ResponseTooLarge,
    TLSError,
    TooManyRedirects,
)
from .http.policy import HttpPolicy
from .registry import ENTRY_POINT_GROUP, Registry
from .taskdef import Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "DestinationNotAllowed",
    "DuplicateTask",
    "HttpConnectError",
    "HttpError",
    "HttpPolicy",
    "HttpProtocolError",
    "HttpTimeout",
    "InvalidArguments",
    "PluginError",
    "Registry",
    "ResponseTooLarge",
    "TLSError",
    "Task",
    "TaskDefinitionError",
    "TaskSpec",
    "TooManyRedirects",
    "UnknownTask",
    "default_registry",
    "reject",
    "task",
]

#: The built-in tasks with the default policy (public destinations only); no plugins or entry points.
default_registry: Registry = Registry.with_builtins(entry_points=False)

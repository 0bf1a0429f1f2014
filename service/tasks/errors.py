"""The registry's errors: unknown task, invalid arguments, and mistakes found while loading tasks."""

from __future__ import annotations

from typing import Any

__all__ = ["DuplicateTask", "InvalidArguments", "PluginError", "TaskDefinitionError", "UnknownTask"]


class UnknownTask(LookupError):
    """No task of this name is registered."""

    def __init__(self, name: Any) -> None:
        super().__init__(f"unknown task {name!r}")
        self.name = name


class InvalidArguments(ValueError):
    """A job's `args` do not fit its task; `errors` is `[{"field": "a.b", "message": ...}]`.

    `field` is a dotted path inside `args` (list positions as numbers); `""` means `args` itself.
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{e['field'] or '(args)'}: {e['message']}" for e in errors)
        super().__init__(f"invalid arguments: {summary}")


class TaskDefinitionError(TypeError):
    """A task function that cannot be exposed as a task (e.g. positional-only parameters)."""


class DuplicateTask(ValueError):
    """Two different functions were registered under one task name."""


class PluginError(ImportError):
    """A plugin module or entry point could not be loaded, or defines no task."""

"""`Task`: one registered function, its argument schema and validator, and how it is run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pool_core import threads

from .decorator import TaskSpec, make_spec, spec_of
from .validation import ArgsValidator

__all__ = ["Task"]


class Task:
    """A named function the engine may run: `validate(args)` before accepting a job, `run(args)` in the pool.

    A task runs on an OS thread unless it is `cooperative` (then on the hub, as a green thread): `run`
    offloads it through `pool_core.threads.execute`, the engine through its own thread pool (`bind`); the
    calling green thread parks meanwhile, so the task still holds its pool slot and never blocks the hub.
    """

    __slots__ = ("fn", "name", "description", "cooperative", "pool", "retries", "retry_backoff", "schema", "source",
                 "_validator")  # fmt: skip

    def __init__(self, fn: Callable[..., Any], spec: TaskSpec) -> None:
        self.fn = fn
        self.name = spec.name
        self.description = spec.description
        self.cooperative = spec.cooperative
        self.pool = spec.pool  # the pool its jobs run in unless they name one (None: `default`)
        self.retries, self.retry_backoff = spec.retries, spec.retry_backoff  # its jobs' defaults
        module = getattr(fn, "__module__", None) or "?"
        self.source = f"{module}.{getattr(fn, '__qualname__', repr(fn))}"
        self._validator = ArgsValidator(fn, spec.name, spec.check)
        #: JSON Schema (draft 2020-12) of the `args` object.
        self.schema: dict[str, Any] = self._validator.schema
        if self.description:
            self.schema.setdefault("description", self.description)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], **overrides: Any) -> Task:
        """A Task for `fn`: its `@task` mark if it has one, with `overrides` (name, cooperative...) applied."""
        spec = spec_of(fn)
        if spec is None or overrides:
            base = spec or make_spec(fn)
            fields = {"name": base.name, "cooperative": base.cooperative, "description": base.description,
                      "check": base.check, "pool": base.pool, "retries": base.retries,
                      "retry_backoff": base.retry_backoff, **overrides}  # fmt: skip
            spec = make_spec(fn, **fields)
        return cls(fn, spec)

    def validate(self, args: Any) -> dict[str, Any]:
        """The normalised arguments (JSON values, only those given) for `run`; InvalidArguments naming each
        bad field."""
        return self._validator.validate(args)

    @property
    def blocking(self) -> bool:
        """True unless `cooperative`: the task runs on an OS thread."""
        return not self.cooperative

    def bind(self, args: dict[str, Any]) -> Callable[[], Any]:
        """The function bound to `validate`d args, to call here (cooperative) or on an OS thread."""
        return functools.partial(self.fn, **self._validator.to_kwargs(args))

    def run(self, args: dict[str, Any]) -> Any:
        """Call the function with `validate`d args (on an OS thread unless `cooperative`); its result."""
        call = self.bind(args)
        return call() if self.cooperative else threads.execute(call)

    def describe(self) -> dict[str, Any]:
        """`{name, description, blocking, pool, retries, retry_backoff, args_schema}` for `GET /v1/tasks`."""
        return {
            "name": self.name,
            "description": self.description,
            "blocking": self.blocking,
            "pool": self.pool,
            "retries": self.retries,
            "retry_backoff": self.retry_backoff,
            "args_schema": self.schema,
        }

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.source}{' blocking' if self.blocking else ''}>"

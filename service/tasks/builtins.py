"""The built-in tasks: `sleep`, `echo` and `http` (see `http.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

import pool_core

from .decorator import task
from .http.client import HttpClient
from .http.policy import HttpPolicy

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["echo", "register_builtins", "sleep"]

MAX_SLEEP = 3600.0


@task()
def sleep(seconds: Annotated[float, Field(ge=0, le=MAX_SLEEP, description="seconds to sleep")]) -> dict[str, Any]:
    """Sleep cooperatively for `seconds` (0 to 3600); returns {slept: seconds}."""
    pool_core.sleep(seconds)
    return {"slept": seconds}


@task()
def echo(**args: Any) -> dict[str, Any]:
    """Return the arguments as given (any JSON object)."""
    return args


def register_builtins(registry: Registry, policy: HttpPolicy | None = None) -> HttpClient:
    """Register `sleep`, `echo` and `http` (bound to `policy`) into `registry`; returns the http client."""
    registry.register(sleep)
    registry.register(echo)
    client = HttpClient(policy)
    registry.register(client.http, name="http", check=client.check)
    registry.on_close(client.close)
    return client

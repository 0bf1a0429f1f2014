"""The built-in tasks `sleep` and `echo` (`http` is `HttpClient.http`); `Registry.with_builtins` adds them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import pool_core

from .decorator import task

__all__ = ["echo", "sleep"]

MAX_SLEEP = 3600.0


@task(cooperative=True)
def sleep(seconds: Annotated[float, Field(ge=0, le=MAX_SLEEP, description="seconds to sleep")]) -> dict[str, Any]:
    """Sleep cooperatively for `seconds` (0 to 3600); returns {slept: seconds}."""
    pool_core.sleep(seconds)
    return {"slept": seconds}


@task(cooperative=True)
def echo(**args: Any) -> dict[str, Any]:
    """Return the arguments as given (any JSON object)."""
    return args

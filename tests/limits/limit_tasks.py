"""Plugin tasks for the limit tests (GREENPOOL_PLUGINS=tests.limits.limit_tasks)."""

from __future__ import annotations

from service.tasks import task


@task(name="limit_big_result")
def limit_big_result(size: int) -> str:
    """Returns a string of `size` characters: a small job with a large result."""
    return "x" * size

"""Plugin tasks for the memory-bound tests (GREENPOOL_PLUGINS=tests.bounds.bound_tasks)."""

from __future__ import annotations

from service.tasks import task


@task(name="bound_blob")
def bound_blob(size: int) -> str:
    """Returns a string of `size` characters: a small job with a large result."""
    return "b" * size

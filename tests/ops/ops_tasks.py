"""Plugin tasks for the operations tests (GREENPOOL_PLUGINS=tests.ops.ops_tasks): `ops_fail` always fails."""

from __future__ import annotations

from service.tasks import task


@task(name="ops_fail")
def ops_fail(message: str = "boom") -> None:
    """Always raises ValueError(message): a job running it ends `failed`."""
    raise ValueError(message)

"""Plugin tasks for the API acceptance tests (loaded with GREENPOOL_PLUGINS=tests.api.plugin_tasks).

* `api_fail(message)` always raises ValueError(message): a job running it ends `failed`.
* `api_block(seconds)` sleeps with `time.sleep`, i.e. it blocks its OS thread; marked `blocking=True`, so the
  engine runs it through `pool_core.threads` and the hub (and every other connection) keeps going.
"""

from __future__ import annotations

import time

from service.tasks import task


@task(name="api_fail")
def api_fail(message: str = "boom") -> None:
    """Always fails with ValueError(message)."""
    raise ValueError(message)


@task(name="api_block", blocking=True)
def api_block(seconds: float) -> float:
    """Blocks its OS thread for `seconds` (time.sleep), then returns them."""
    time.sleep(seconds)
    return seconds

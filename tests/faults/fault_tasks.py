"""Plugin tasks that misbehave on purpose (GREENPOOL_PLUGINS=tests.faults.fault_tasks).

* `fault_raise(message)` raises RuntimeError(message).
* `fault_block_hub(seconds)` calls `time.sleep` WITHOUT `blocking=True`: a bug that freezes the hub (every
  connection and job) for `seconds`.
* `fault_forever()` never ends (a cooperative loop): only a timeout, a cancel or a drain ends its job.
"""

from __future__ import annotations

import time

import pool_core
from service.tasks import task


@task(name="fault_raise")
def fault_raise(message: str = "boom") -> None:
    """Always fails with RuntimeError(message)."""
    raise RuntimeError(message)


@task(name="fault_block_hub", cooperative=True)
def fault_block_hub(seconds: float) -> float:
    """Blocks the whole hub for `seconds` (time.sleep on the hub's thread), then returns them."""
    time.sleep(seconds)
    return seconds


@task(name="fault_forever", cooperative=True)
def fault_forever() -> None:
    """Never returns."""
    while True:
        pool_core.sleep(0.5)

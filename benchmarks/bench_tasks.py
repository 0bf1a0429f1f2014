"""greenpool plugin tasks of benchmarks/bench_celery.py (GREENPOOL_PLUGINS=bench_tasks, benchmarks/ on PYTHONPATH).

`bench_started(seconds)` notes the wall-clock time it started, sleeps cooperatively and returns that time, so
the jobs themselves say when a resize let them run (Celery's peer task in celery_peer.py does the same).
"""

from __future__ import annotations

import time

import pool_core
from service.tasks import task


@task(name="bench_started", cooperative=True)
def bench_started(seconds: float) -> float:
    """Sleep `seconds`; return the time.time() at which this job started."""
    started = time.time()
    pool_core.sleep(seconds)
    return started

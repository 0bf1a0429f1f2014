"""The Celery peer of benchmarks/bench_celery.py: an app on the Redis of CELERY_PEER_REDIS (broker on db 0,
results on db 2) and the tasks that mirror greenpool's: `echo`, `sleep` and `started` (which also pushes its
start time to the Redis list STARTED, so the benchmark sees without polling the worker when jobs run).

Run by the benchmark as `celery -A celery_peer worker -P gevent -c N` from benchmarks/. Never imported by
greenpool itself: Celery is only something we measure against (the `bench` extra).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

REDIS = os.environ.get("CELERY_PEER_REDIS", "redis://127.0.0.1:6379")
STARTED = "bench:started"

app = Celery("celery_peer", broker=f"{REDIS}/0", backend=f"{REDIS}/2")
app.conf.update(task_ignore_result=False, result_expires=600, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, worker_send_task_events=False)  # fmt: skip
_redis = redis.Redis.from_url(f"{REDIS}/0")


@app.task(name="echo")
def echo(**args: object) -> dict:
    """Return the arguments as given."""
    return args


@app.task(name="sleep")
def sleep(seconds: float) -> dict:
    """Sleep `seconds` (cooperatively: the gevent pool patches time.sleep)."""
    time.sleep(seconds)
    return {"slept": seconds}


@app.task(name="started")
def started(seconds: float) -> float:
    """Note the start time (returned, and pushed to STARTED), then sleep `seconds`."""
    now = time.time()
    _redis.rpush(STARTED, now)
    time.sleep(seconds)
    return now

"""The plugin tasks of the tests' real servers (loaded with GREENPOOL_PLUGINS=tests.plugins.tasks).

* `fail(message)` always raises ValueError(message): a job running it ends `failed`.
* `api_block(seconds)` sleeps with `time.sleep`, i.e. it blocks its OS thread; marked `blocking=True`, so the
  engine runs it through `pool_core.threads` and the hub (and every other connection) keeps going.
* `careless_sleep(seconds)`: the same under a bare `@task`, as a plugin author who knows nothing of green
  threads writes it; plugin tasks run on OS threads unless they say `cooperative=True`, so it is safe too.
* `client_value(value, fail=False)` returns `value`, or raises ValueError when `fail`: one task whose items
  can succeed or fail, so a single pile or map can mix outcomes.
* `limit_big_result(size)`: a small job with a large result.
* `retry_flaky(key, failures=2)` fails (ValueError) its first `failures` calls with one `key`, then returns
  how many calls that key has had: a job with `retries` succeeds on attempt `failures + 1`.
* `span(path, seconds)` sleeps cooperatively and appends its start and end times to the file `path`, so jobs
  run by several servers (cluster replicas) measure how many ran at once.
* `pool_probe(key, seconds)` sleeps cooperatively and returns how many `pool_probe` jobs of `key` were running
  in this process when it started (itself included), so the jobs themselves measure a pool's concurrency;
  `pool_declared(key, seconds)` does the same in the pool it declares, `probed` (`@task(pool="probed")`).

And tasks that misbehave on purpose (the fault tests):

* `fault_raise(message)` raises RuntimeError(message).
* `fault_block_hub(seconds)` calls `time.sleep` WITHOUT `blocking=True`: a bug that freezes the hub (every
  connection and job) for `seconds`.
* `fault_forever()` never ends (a cooperative loop): only a timeout, a cancel or a drain ends its job.
"""

from __future__ import annotations

import time
from typing import Any

import pool_core
from service.tasks import task

MODULE = "tests.plugins.tasks"


@task(name="fail")
def fail(message: str = "boom") -> None:
    """Always fails with ValueError(message)."""
    raise ValueError(message)


@task(name="api_block", blocking=True)
def api_block(seconds: float) -> float:
    """Blocks its OS thread for `seconds` (time.sleep), then returns them."""
    time.sleep(seconds)
    return seconds


@task
def careless_sleep(seconds: float) -> float:
    """Blocks for `seconds` with a plain time.sleep, then returns them."""
    time.sleep(seconds)
    return seconds


@task(name="client_value")
def client_value(value: Any = None, fail: bool = False) -> Any:
    """Return `value`; raise ValueError(f"bad {value}") instead when `fail`."""
    if fail:
        raise ValueError(f"bad {value}")
    return value


@task(name="limit_big_result")
def limit_big_result(size: int) -> str:
    """Returns a string of `size` characters: a small job with a large result."""
    return "x" * size


_FLAKY_CALLS: dict[str, int] = {}  # retry_flaky's calls per key (this server process's)


@task(name="retry_flaky", cooperative=True)
def retry_flaky(key: str, failures: int = 2) -> int:
    """Fail the first `failures` calls with this `key`; then return how many calls it has had."""
    calls = _FLAKY_CALLS[key] = _FLAKY_CALLS.get(key, 0) + 1
    if calls <= failures:
        raise ValueError(f"call {calls} of {key!r} fails")
    return calls


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


_probing: dict[str, int] = {}  # key -> pool_probe jobs running now (all on the hub: no lock needed)


@task(name="pool_probe", cooperative=True)
def pool_probe(key: str, seconds: float = 0.2) -> dict[str, Any]:
    """Sleep `seconds`; returns `{key, running}`: the jobs of `key` running when this one started."""
    running = _probing[key] = _probing.get(key, 0) + 1
    try:
        pool_core.sleep(seconds)
    finally:
        _probing[key] -= 1
    return {"key": key, "running": running}


@task(name="pool_declared", cooperative=True, pool="probed")
def pool_declared(key: str, seconds: float = 0.0) -> dict[str, Any]:
    """`pool_probe` in the pool this task declares (`probed`) unless the job names another."""
    return pool_probe(key, seconds)


@task(name="span", cooperative=True)
def span(path: str, seconds: float = 0.2) -> float:
    """Sleep `seconds` and append `start end` (CLOCK_MONOTONIC, shared by every process of the machine) to the
    file `path`: jobs of several servers (cluster replicas) measure how many of them ran at once."""
    start = time.monotonic()
    pool_core.sleep(seconds)
    with open(path, "a") as log:  # one short O_APPEND write per job: lines never interleave
        log.write(f"{start!r} {time.monotonic()!r}\n")
    return seconds

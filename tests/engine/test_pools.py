"""Named pools in-process (design §9): seeding and where each size comes from, which pool a job goes to, each
pool's own queue bound, Retry-After and counters, create/resize/delete, and recovery into each job's own pool
from a real SQLite file. The concurrency limits against a real server are in tests/pools."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from pool_core import sleep
from service.config import Config, ConfigError
from service.engine import Engine, JobSpec, errors
from service.storage import MemoryStore
from service.storage.sqlite import SqliteStore
from service.tasks import Registry, task


@task(name="in_db", cooperative=True, pool="db")
def in_db() -> str:
    """A task whose jobs run in the `db` pool unless they name another."""
    return "db"


@pytest.fixture
def make(engine_factory: Callable[..., Engine]) -> Callable[..., Engine]:
    """Build engines with the `in_db` task and room for 10 queued jobs (stopped after the test)."""

    def build(store: object = None, **config: object) -> Engine:
        registry = Registry.with_builtins(entry_points=False)
        registry.register(in_db)
        return engine_factory(registry, store, **{"max_queued": 10, **config})

    return build


def test_pools_are_seeded_from_the_configuration_and_a_stored_size_wins(make, caplog) -> None:
    store = MemoryStore(100)
    store.sizes.set("db", 3)
    store.sizes.set("extra", 4)
    with caplog.at_level(logging.INFO, "greenpool.jobs"):
        engine = make(store, pool_size=7, pools=("db:20", "io:500"))
    assert engine.pool_names() == ["default", "db", "extra", "io"]
    sizes = {name: engine.stats(name)["size"] for name in engine.pool_names()}
    assert sizes == {"default": 7, "db": 3, "extra": 4, "io": 500}
    assert store.sizes.all() == {"default": 7, "db": 3, "extra": 4, "io": 500}
    sources = {r.pool: r.size_from for r in caplog.records if r.getMessage() == "pool"}
    assert sources == {"default": "GREENPOOL_POOL_SIZE", "db": "store", "extra": "store", "io": "GREENPOOL_POOLS"}
    assert make(MemoryStore(10), pools=("default:9",)).stats()["size"] == 9  # named in GREENPOOL_POOLS


@pytest.mark.parametrize("entry", ["DB:2", "db", "db:-1", "db:x", "db:100001", "a" * 65 + ":1", ":3"])
def test_a_bad_pools_entry_is_a_config_error_naming_it(entry: str) -> None:
    with pytest.raises(ConfigError, match="GREENPOOL_POOLS entry"):
        Config.from_env({"GREENPOOL_POOLS": entry})


def test_a_job_runs_in_its_named_pool_else_its_tasks_else_default(make) -> None:
    engine = make(pool_size=0, pools=("db:0", "io:0"))
    assert engine.submit("echo", {}).pool == "default"
    assert engine.submit("in_db", {}).pool == "db"
    assert engine.submit("in_db", {}, pool="io").pool == "io"
    pile = engine.create_pile([JobSpec("echo", {}), JobSpec("in_db", {}), ("echo", {}, None, "io")])
    assert [job.pool for job in pile.jobs] == ["default", "db", "io"]
    assert engine.submit("echo", {}, pool="io").to_dict()["pool"] == "io"
    assert [engine.stats(p)["queued"] for p in ("default", "db", "io")] == [2, 2, 3]
    assert [engine.stats(p)["submitted"] for p in ("default", "db", "io")] == [2, 2, 3]


def test_an_unknown_pool_names_pool_and_the_job(make) -> None:
    engine = make(pool_size=0)
    with pytest.raises(errors.UnknownPool) as one:
        engine.submit("echo", {}, pool="nope")
    assert [(e.index, e.field) for e in one.value.errors] == [(None, "pool")]
    with pytest.raises(errors.UnknownPool) as declared:  # the task declares `db`, which this server lacks
        engine.submit("in_db", {})
    assert declared.value.pool == "db"
    with pytest.raises(errors.UnknownPool) as pile:
        engine.create_pile([JobSpec("echo", {}), JobSpec("echo", {}, None, "nope")])
    assert [(e.index, e.field) for e in pile.value.errors] == [(1, "pool")]
    assert engine.stats()["queued"] == 0  # nothing of the refused pile was taken


def test_each_pool_has_its_own_queue_bound_and_client_share(make) -> None:
    engine = make(pool_size=0, pools=("db:0",), max_queued=4, max_queued_per_client=3)
    for _ in range(3):
        engine.submit("echo", {}, client="a")
    with pytest.raises(errors.QueueFull):
        engine.submit("echo", {}, client="a")  # a's share of `default`
    engine.submit("echo", {}, client="b")
    with pytest.raises(errors.QueueFull) as full:
        engine.submit("echo", {}, client="b")  # `default` is full
    assert (full.value.limit, full.value.retry_after) == (4, 60)
    for _ in range(3):
        engine.submit("echo", {}, pool="db", client="a")  # `db` has its own bound and shares
    with pytest.raises(errors.QueueFull):  # one pile over two pools: all or none
        engine.create_pile([JobSpec("echo", {}, None, "db"), JobSpec("echo", {}, None, "db")], client="b")
    assert (engine.stats()["queued"], engine.stats("db")["queued"]) == (4, 3)


def test_retry_after_follows_each_pools_own_finish_rate(make) -> None:
    engine = make(pool_size=0, pools=("db:0",), max_queued=1)
    engine.pools.lane("db").finish_rate = 2.0  # jobs/s, as the sweep would have measured
    engine.submit("echo", {})
    engine.submit("echo", {}, pool="db")
    with pytest.raises(errors.QueueFull) as slow:
        engine.submit("echo", {})
    with pytest.raises(errors.QueueFull) as fast:
        engine.submit("echo", {}, pool="db")
    assert (slow.value.retry_after, fast.value.retry_after) == (60, 1)


def test_create_resize_and_delete_pools(make) -> None:
    engine = make(pool_size=1)
    assert engine.resize(0, "db") is True and engine.resize(2, "db") is False
    assert engine.stats("db")["size"] == 2 and engine.stats()["size"] == 1
    engine.resize(0, "db")
    job = engine.submit("echo", {}, pool="db")
    with pytest.raises(errors.PoolInUse) as busy:
        engine.delete_pool("db")
    assert (busy.value.running, busy.value.queued) == (0, 1)
    with pytest.raises(errors.PoolInUse):
        engine.delete_pool("default")
    engine.cancel(job.id)
    engine.delete_pool("db")
    assert engine.pool_names() == ["default"] and engine.store.sizes.all() == {"default": 1}
    with pytest.raises(errors.PoolNotFound):
        engine.delete_pool("db")
    with pytest.raises(errors.PoolNotFound):
        engine.stats("db")
    with pytest.raises(errors.UnknownPool):
        engine.submit("echo", {}, pool="db")


def test_growing_a_pool_runs_its_queued_jobs_and_leaves_the_other_alone(make) -> None:
    engine = make(pool_size=0, pools=("db:0",))
    jobs = [engine.submit("in_db", {}) for _ in range(3)]
    other = engine.submit("echo", {})
    engine.resize(3, "db")
    for job in jobs:
        assert engine.wait(job, 5)
    sleep(0.05)
    assert [job.status for job in jobs] == ["succeeded"] * 3 and other.status == "queued"
    assert engine.stats("db")["succeeded"] == 3 and engine.stats()["succeeded"] == 0


def test_recovery_puts_queued_jobs_back_in_their_own_pools(make, tmp_path: Path) -> None:
    path = str(tmp_path / "gp.db")
    store = SqliteStore(path, 100)
    engine = make(store, pool_size=0, pools=("db:0",))
    engine.resize(0, "later")  # created at runtime: only the store knows it
    queued = [engine.submit("echo", {}, pool=name) for name in ("db", "later", "default")]
    engine.commit()
    for thread in engine.threads():
        thread.kill()
    store.close()

    again = make(SqliteStore(path, 100), pool_size=0, pools=("db:2",))
    assert again.pool_names() == ["default", "db", "later"]
    assert again.stats("db")["size"] == 0  # the stored size, not the seed
    assert [again.stats(p)["queued"] for p in ("db", "later", "default")] == [1, 1, 1]
    again.resize(1, "later")
    job = again.get(queued[1].id)
    assert again.wait(job, 5) and job.status == "succeeded" and job.pool == "later"
    assert again.get(queued[0].id).status == "queued"
    again.store.close()


def test_queued_jobs_of_a_pool_with_no_stored_size_get_a_lane_of_defaults_size(make, tmp_path: Path) -> None:
    path = str(tmp_path / "gp.db")
    store = SqliteStore(path, 100)
    engine = make(store, pool_size=1, pools=("db:0",))
    job = engine.submit("echo", {}, pool="db")
    engine.commit()
    for thread in engine.threads():
        thread.kill()
    store.close()
    with sqlite3.connect(path) as conn:  # a file whose size row went missing
        conn.execute("DELETE FROM sizes WHERE pool = 'db'")

    again = make(SqliteStore(path, 100), pool_size=1)
    again.recover()
    assert again.pool_names() == ["default", "db"] and again.stats("db")["size"] == 1
    recovered = again.get(job.id)
    assert again.wait(recovered, 5) and recovered.status == "succeeded"
    again.store.close()

"""The Redis store across "replicas": two RedisStore instances on one redis-server and one key prefix, with
green threads in both racing on the same job, bound, key and queue (each call parks on its socket, so the
calls interleave). Exactly one winner, never over the bound, no job taken twice; and what one replica
wrote, the other reads. (Every port's guarantees on one instance: test_store_contract.py.)"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_redis_support

from pool_core import GreenPool
from service.storage import StoreError
from service.storage.records import CANCELLED, QUEUED, RUNNING, SUCCEEDED, Job, Pile
from service.storage.redis import RedisStore

redis_server = test_redis_support.redis_server  # the module-scoped server fixture
pytestmark = pytest.mark.timeout(60)
THREADS = 8  # green threads per replica
_prefixes = itertools.count()


@pytest.fixture
def replicas(redis_server: test_redis_support.RedisServer) -> Iterator[tuple[RedisStore, RedisStore]]:
    prefix = f"race{next(_prefixes)}"
    stores = (RedisStore(redis_server.url, 1000, prefix=prefix), RedisStore(redis_server.url, 1000, prefix=prefix))
    yield stores
    for store in stores:
        store.close()


def race(stores: tuple[RedisStore, ...], call: Callable[[RedisStore, int], Any]) -> list[Any]:
    """`call(store, n)` in THREADS green threads per store, all at once; their results."""
    pool = GreenPool(THREADS * len(stores))
    threads = [pool.spawn(call, store, n) for n in range(THREADS) for store in stores]
    return [thread.wait() for thread in threads]


def queued_jobs(store: RedisStore, count: int) -> list[Job]:
    jobs = []
    queue = store.queue("default")
    for n in range(count):
        job = Job(f"j{n}", "echo", {"n": n}, None, 1_700_000_000.0 + n)
        store.jobs.add(job)
        assert queue.reserve(1, 10_000)
        queue.push(job)
        jobs.append(job)
    return jobs


def test_of_replicas_racing_to_finish_a_job_exactly_one_wins(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, b = replicas
    jobs = queued_jobs(a, 20)
    for job in jobs:
        copies = {a: a.jobs.get(job.id), b: b.jobs.get(job.id)}  # each replica's own record of it
        wins = race(replicas, lambda s, n, c=copies: s.jobs.finish(c[s], SUCCEEDED if n % 2 else CANCELLED,
                                                                   n, None, 1_700_000_100.0))  # fmt: skip
        assert wins.count(QUEUED) == 1 and wins.count(None) == len(wins) - 1


def test_replicas_reserving_against_one_bound_never_pass_it(replicas: tuple[RedisStore, RedisStore]) -> None:
    limit = 100

    def reserve(store: RedisStore, _: int) -> int:
        taken = 0
        while store.queue("db").reserve(3, limit):
            taken += 3
        return taken

    total = sum(race(replicas, reserve))
    assert limit - 3 < total <= limit
    for store in replicas:
        store.queue("db").reserve(0, limit)  # any call refreshes the cached count
        assert store.queue("db").queued == total


def test_of_replicas_claiming_one_key_exactly_one_gets_it(replicas: tuple[RedisStore, RedisStore]) -> None:
    found = race(replicas, lambda store, n: (n, id(store), store.keys.claim(("alice", "k"), (n, id(store)))))
    winners = [(n, who) for n, who, value in found if value is None]
    assert len(winners) == 1
    assert all(value == winners[0] for _, _, value in found if value is not None)
    assert len(replicas[0].keys) == len(replicas[1].keys) == 1


def test_replicas_taking_from_one_queue_never_take_a_job_twice(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, b = replicas
    jobs = queued_jobs(a, 120)

    def drain(store: RedisStore, _: int) -> list[str]:
        taken = []
        while (job := store.queue("default").take(1_700_000_200.0)) is not None:
            assert job.status == RUNNING
            taken.append(job.id)
        return taken

    taken = Counter(job_id for ids in race(replicas, drain) for job_id in ids)
    assert sorted(taken) == sorted(job.id for job in jobs) and set(taken.values()) == {1}
    assert (a.queue("default").queued, b.queue("default").queued) == (0, 0)


def test_a_leased_take_tells_a_job_no_job_and_no_lease_apart(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, b = replicas
    a.sizes.set("default", 1)
    (job,) = queued_jobs(a, 1)
    qa, qb = a.queue("default"), b.queue("default")
    assert qa.take_leased("A", "t1", 10_000, 1_700_000_200.0) == (job, True)  # granted with its job
    assert qb.take_leased("B", "u1", 10_000, 1_700_000_200.0) == (None, False)  # the one slot is held
    assert qa.take_leased("A", "t1", 10_000, 1_700_000_201.0) == (None, True)  # kept, but nothing queued
    assert qb.take_leased("B", "u1", 10_000, 1_700_000_201.0) == (None, True)  # so the slot was freed


def test_what_one_replica_writes_the_other_reads(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, b = replicas
    pile = Pile("p1", created_at=1_700_000_000.0)
    a.piles.add(pile)
    job = Job("j1", "echo", {"n": 1}, None, 1_700_000_001.0, pile="p1")
    a.jobs.add(job)
    a.piles.add_job(pile, job)
    a.queue("default").reserve(1, 10)
    a.queue("default").push(job)
    seen = b.jobs.get("j1")
    assert seen is not None and seen is not job and seen.status == QUEUED and seen.pile_index == 0
    taken = b.queue("default").take(1_700_000_002.0)
    assert taken is seen and a.jobs.get("j1") is job and job.status == RUNNING  # a's copy refreshed in place
    assert a.jobs.finish(job, SUCCEEDED, {"ok": True}, None, 1_700_000_003.0) == RUNNING
    assert job.position == 0 and a.results.append(pile, job, 1_700_000_003.0) == 0  # finish logged it, once
    assert b.jobs.get("j1") is seen and seen.status == SUCCEEDED and seen.result == {"ok": True}
    b_pile = b.piles.get("p1")
    assert b_pile is not None and b_pile.summary()["done"] == 1 and b_pile.size == 1
    assert [r.id for r in b.results.read(b_pile, -1, "completion")[0]] == ["j1"]
    a.sizes.set("default", 7)
    assert b.sizes.all() == {"default": 7}


def test_a_store_whose_redis_is_down_raises_store_error_and_says_why_until_it_is_back(tmp_path) -> None:
    server = test_redis_support.RedisServer(tmp_path).start()
    store = RedisStore(server.url, 100, prefix="down", retries=0)
    try:
        assert store.unavailable() is None and store.jobs.get("nope") is None
        queue = store.queue("default")
        server.kill()
        with pytest.raises(StoreError, match="cannot be used now"):
            store.jobs.get("nope")
        assert "cannot be used now" in (store.unavailable() or "")
        assert queue.take(1_700_000_000.0) is None and queue.queued == 0  # a slot parks rather than spin
        server.start()
        assert store.jobs.get("nope") is None and store.unavailable() is None
    finally:
        store.close()
        server.stop()


def test_an_unreachable_redis_at_open_is_a_store_error_naming_it() -> None:
    port = test_redis_support.free_port()
    with pytest.raises(StoreError, match=f"redis://127.0.0.1:{port}/0") as raised:
        RedisStore(f"redis://:secret@127.0.0.1:{port}/0", 100, retries=0)
    assert "secret" not in str(raised.value)


def test_a_redis_out_of_memory_is_a_store_error_until_it_has_room(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, _ = replicas
    a.client.config_set("maxmemory", "1")  # every write is refused (noeviction, the default policy)
    try:
        with pytest.raises(StoreError, match="cannot be used now"):
            a.jobs.add(Job("oom", "echo", {}, None, 1_700_000_000.0))
        assert a.unavailable() is not None
    finally:
        a.client.config_set("maxmemory", "0")
    a.jobs.add(Job("room", "echo", {}, None, 1_700_000_000.0))
    assert a.unavailable() is None and a.jobs.get("room") is not None


def test_a_batch_sends_records_members_and_pushes_at_its_end(replicas: tuple[RedisStore, RedisStore]) -> None:
    """What a pile's creation does inside `batch()`: nothing reaches Redis until the end, then all of it, in
    order, with seq, pile indexes and the queue's counts set from the replies."""
    a, b = replicas
    pile = Pile("p1", created_at=1_700_000_000.0)
    a.piles.add(pile)
    queue = a.queue("default")
    assert queue.reserve(3, 100)
    jobs = [Job(f"b{n}", "echo", {"n": n}, None, 1_700_000_001.0 + n, pile="p1") for n in range(3)]
    with a.batch():
        for job in jobs:
            a.jobs.add(job)
            a.piles.add_job(pile, job)
            queue.push(job)
        assert b.jobs.get("b0") is None  # not sent yet
    assert [job.pile_index for job in jobs] == [0, 1, 2] and jobs[0].seq < jobs[1].seq < jobs[2].seq
    assert pile.size == 3 and queue.queued == 3 and b.piles.get("p1").size == 3  # type: ignore[union-attr]
    assert [b.queue("default").take(1_700_000_010.0).id for _ in range(3)] == ["b0", "b1", "b2"]  # type: ignore[union-attr]


def test_green_threads_batching_at_once_each_send_their_own_calls(replicas: tuple[RedisStore, RedisStore]) -> None:
    """Green threads each adding and pushing a job inside their own `batch()` while the others' flushes park,
    and as many adding outside any batch meanwhile: every job is stored, and queued once (a batch shared
    between green threads would send, or drop, another's calls)."""
    a, b = replicas
    queue = a.queue("default")
    assert queue.reserve(THREADS, 100)

    def batched(n: int) -> None:
        job = Job(f"g{n}", "echo", {"n": n}, None, 1_700_000_000.0 + n)
        with a.batch():
            a.jobs.add(job)
            queue.push(job)

    def plain(n: int) -> None:
        a.jobs.add(Job(f"p{n}", "echo", {"n": n}, None, 1_700_000_000.0 + n))

    pool = GreenPool(2 * THREADS)
    for n in range(THREADS):
        pool.spawn(batched, n)
        pool.spawn(plain, n)
    pool.waitall()
    assert all(b.jobs.get(f"p{n}") is not None for n in range(THREADS))
    taken = [b.queue("default").take(1_700_000_100.0) for _ in range(THREADS + 1)]
    assert sorted(job.id for job in taken[:-1]) == sorted(f"g{n}" for n in range(THREADS))  # type: ignore[union-attr]
    assert taken[-1] is None
